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

# How much each consensus rule keeps, overall and per pair of sources. One row per rule with
# source_a and source_b null: its decisions, how many it kept, and the share. Then one row per
# rule and pair of sources (names in alphabetical order), over the rule's decisions that stored
# every source's view (source_views): on how many both sources had a view, on how many those
# views were the same first wrong step, and the retention the default rule would have if only
# this pair voted (kept when they agree, or when just one of them has a view; as
# tasks.consensus.pairwise_agreement computes it). A decision is per solution and set of sources,
# so a solution decided in two runs with different sources counts twice.
CONSENSUS_RETENTION = """
WITH viewed AS (
    SELECT decision_id, rule, split_part(entry, '=', 1) AS source,
           nullif(split_part(entry, '=', 2), 'unavailable') AS first_error
    FROM consensus, unnest(source_views) AS listed(entry)
),
decided AS (
    SELECT decision_id, rule FROM consensus WHERE source_views IS NOT NULL
),
sources AS (SELECT DISTINCT rule, source FROM viewed),
pairs AS (
    SELECT a.rule, a.source AS source_a, b.source AS source_b
    FROM sources AS a JOIN sources AS b ON a.rule = b.rule AND a.source < b.source
),
per_decision AS (
    SELECT pairs.rule, pairs.source_a, pairs.source_b, a.first_error AS view_a, b.first_error AS view_b
    FROM pairs
    JOIN decided ON decided.rule = pairs.rule
    LEFT JOIN viewed AS a ON a.decision_id = decided.decision_id AND a.source = pairs.source_a
    LEFT JOIN viewed AS b ON b.decision_id = decided.decision_id AND b.source = pairs.source_b
),
by_pair AS (
    SELECT rule, source_a, source_b, count(*) AS decisions,
           count(*) FILTER (WHERE view_a IS NOT NULL AND view_b IS NOT NULL) AS both_available,
           count(*) FILTER (WHERE view_a = view_b) AS agreeing,
           count(*) FILTER (WHERE (view_a IS NULL) != (view_b IS NULL)) AS one_available
    FROM per_decision GROUP BY ALL
)
SELECT rule, NULL::VARCHAR AS source_a, NULL::VARCHAR AS source_b, count(*) AS decisions,
       count(*) FILTER (WHERE kept) AS kept, count(*) FILTER (WHERE kept) / count(*) AS retention,
       NULL::BIGINT AS both_available, NULL::BIGINT AS agreeing, NULL::DOUBLE AS agreement
FROM consensus GROUP BY rule
UNION ALL
SELECT rule, source_a, source_b, decisions, one_available + agreeing AS kept,
       (one_available + agreeing) / decisions AS retention, both_available, agreeing,
       agreeing / nullif(both_available, 0) AS agreement
FROM by_pair
ORDER BY rule, source_a NULLS FIRST, source_b
"""

VIEWS: dict[str, str] = {
    "labeled_steps": LABELED_STEPS,
    "label_costs": LABEL_COSTS,
    "consensus_retention": CONSENSUS_RETENTION,
}
