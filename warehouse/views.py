"""Named SQL views: one-line SQL for users over the warehouse tables."""

from __future__ import annotations

# One row per step: its problem, the steps before it, the step, and every label and verdict it has.
LABELED_STEPS = """
WITH RECURSIVE paths(node_id, prefix, path) AS (
    SELECT node_id, '', step_text || chr(10)
    FROM nodes WHERE parent_id IS NULL
    UNION ALL
    SELECT child.node_id, parent.path, parent.path || child.step_text || chr(10)
    FROM nodes AS child JOIN paths AS parent ON child.parent_id = parent.node_id
),
labels AS (
    SELECT node_id,
           list({'labeler': labeler, 'q': q, 'hard': hard, 'n': n, 'n_correct': n_correct}
                ORDER BY labeler) AS labels,
           max(q) FILTER (WHERE labeler = 'mc') AS mc_q,
           bool_or(hard) FILTER (WHERE labeler = 'mc') AS mc_hard,
           max(n) FILTER (WHERE labeler = 'mc') AS mc_n,
           max(n_correct) FILTER (WHERE labeler = 'mc') AS mc_n_correct
    FROM step_labels GROUP BY node_id
),
checks AS (
    SELECT node_id,
           list({'verifier': verifier, 'verdict': verdict, 'evidence': evidence}
                ORDER BY verifier) AS verdicts
    FROM verdicts GROUP BY node_id
)
SELECT problems.problem_id, problems.question, problems.answer AS reference_answer,
       nodes.node_id, nodes.parent_id, nodes.depth, paths.prefix, nodes.step_text,
       nodes.is_terminal, nodes.final_answer, nodes.is_correct, nodes.policy,
       labels.mc_q, labels.mc_hard, labels.mc_n, labels.mc_n_correct,
       coalesce(labels.labels, []) AS labels, coalesce(checks.verdicts, []) AS verdicts
FROM nodes
JOIN problems USING (problem_id)
JOIN paths USING (node_id)
LEFT JOIN labels USING (node_id)
LEFT JOIN checks USING (node_id)
"""

# What each run spent, per labeller: labels, rollouts, and the prompts, tokens and wall time the
# policy spent on them (policy_usage), so a user can see what each label cost.
LABEL_COSTS = """
WITH labels AS (
    SELECT run_id, labeler, count(*) AS labels, sum(n) AS rollouts FROM step_labels GROUP BY ALL
)
SELECT coalesce(labels.run_id, usage.run_id) AS run_id, coalesce(labels.labeler, usage.labeler) AS labeler,
       labels.labels, labels.rollouts, usage.prompts, usage.generated_tokens, usage.seconds AS policy_seconds,
       usage.seconds / nullif(labels.labels, 0) AS policy_seconds_per_label
FROM labels FULL JOIN (SELECT * FROM policy_usage WHERE stage = 'labels') AS usage
    ON labels.run_id = usage.run_id AND labels.labeler = usage.labeler
"""

VIEWS: dict[str, str] = {
    "labeled_steps": LABELED_STEPS,
    "label_costs": LABEL_COSTS,
}
