"""Prompt formats: exact prompts for each kind, the boundary and answer reader that go with it,
and formats that cannot work refused in one line before a run starts."""

import json

import pytest

from schemas.config import GenerateConfig
from schemas.records import Problem
from tasks.prompts import (
    BOXED_SYSTEM_PROMPT, ChatPrompt, PLAIN_FORMAT, PromptFormatError, format_for, prompt_key, render_chat,
)
from tasks.text_format import prefix_for, prompt_for

PROBLEM = Problem("p1", "Mia has 3 apples. She gets 2 more. How many apples does Mia have now?", "5", "synthetic")
STEPS = ["Step 1: 3 + 2 = 5"]


def few_shot_file(tmp_path, rows):
    path = tmp_path / "shots.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_plain_is_the_embedded_models_format():
    plain = format_for(GenerateConfig())
    assert plain == PLAIN_FORMAT and plain.id == "plain"
    assert plain.prompt(PROBLEM) == prompt_for(PROBLEM.question)
    assert plain.prefix(PROBLEM, STEPS) == prefix_for(PROBLEM.question, STEPS)
    assert plain.split("Step 1: 3 + 2 = 5\nStep 2: 5 * 2 = 10\nThe answer is 10.") == [
        "Step 1: 3 + 2 = 5", "Step 2: 5 * 2 = 10\nThe answer is 10."]
    assert plain.answer("The answer is 10.") == "10"


def test_chat_is_system_few_shot_turns_then_the_problem_with_the_steps_as_the_reply(tmp_path):
    shots = few_shot_file(tmp_path, [{"question": "Sam has 9 coins. How many coins?", "answer": "9 + 0 = 9\n#### 9"}])
    chat = format_for(GenerateConfig(prompt_format="chat", few_shot_file=shots))

    assert chat.prompt(PROBLEM) == ChatPrompt((
        ("system", BOXED_SYSTEM_PROMPT),
        ("user", "Sam has 9 coins. How many coins?"),
        ("assistant", "9 + 0 = 9\n\nThe answer is $\\boxed{9}$."),
        ("user", PROBLEM.question),
    ))
    prefix = chat.prefix(PROBLEM, ["Step 1: 3 + 2 = 5", "Step 2: 5 + 0 = 5"])
    assert prefix.reply == "Step 1: 3 + 2 = 5\n\nStep 2: 5 + 0 = 5\n\n"
    assert chat.split("Step 1: 3 + 2 = 5\nso 5 apples.\n\nThe answer is $\\boxed{5}$.") == [
        "Step 1: 3 + 2 = 5\nso 5 apples.", "The answer is $\\boxed{5}$."]
    assert chat.answer("so we get \\boxed{\\frac{10}{2}}.") == "\\frac{10}{2}"
    assert chat.answer("The answer is 5.") is None  # chat reads \boxed{} only (math-verify)
    assert chat.id.startswith("chat:") and chat.description()["few_shot"] == 1


def test_a_system_prompt_can_be_replaced_or_left_out_and_the_id_follows():
    default = format_for(GenerateConfig(prompt_format="chat"))
    custom = format_for(GenerateConfig(prompt_format="chat", system_prompt="Be brief."))
    none = format_for(GenerateConfig(prompt_format="chat", system_prompt=""))
    assert custom.prompt(PROBLEM).messages[0] == ("system", "Be brief.")
    assert none.prompt(PROBLEM).messages == (("user", PROBLEM.question),)
    assert len({default.id, custom.id, none.id}) == 3


def test_a_template_renders_the_problems_fields_and_its_examples(tmp_path):
    template = tmp_path / "cot.jinja"
    template.write_text(
        "{% for example in examples %}Q: {{ example.question }}\n{{ example.solution }}\n\n{% endfor %}"
        "{{ system }}\nQ ({{ source }}): {{ question }}\nA:\n"
    )
    shots = few_shot_file(tmp_path, [{"question": "1 + 1?", "answer": "2", "steps": ["1 + 1 = 2"]}])
    formatted = format_for(GenerateConfig(prompt_format=str(template), few_shot_file=shots, system_prompt="Think."))

    assert formatted.prompt(PROBLEM) == (
        "Q: 1 + 1?\n1 + 1 = 2\n\nThe answer is $\\boxed{2}$.\n\n"
        f"Think.\nQ (synthetic): {PROBLEM.question}\nA:\n"
    )
    assert formatted.prefix(PROBLEM, STEPS) == formatted.prompt(PROBLEM) + "Step 1: 3 + 2 = 5\n\n"
    assert formatted.id.startswith("template:cot.jinja:")
    template.write_text("Q: {{ question }}\n")  # another template text is another format
    assert format_for(GenerateConfig(prompt_format=str(template))).id != formatted.id


@pytest.mark.parametrize("text, expected", [
    ("Q: {{ answer }}", r"template bad\.jinja does not render: 'answer' is undefined; its fields are question, "),
    ("Q: {% if %}", r"template bad\.jinja does not render \(line 1\): "),
    ("{{ ''.__class__.__mro__ }}", r"template bad\.jinja does not render"),  # the sandbox
])
def test_a_template_that_cannot_render_is_one_line_before_the_run(tmp_path, text, expected):
    template = tmp_path / "bad.jinja"
    template.write_text(text)
    with pytest.raises(PromptFormatError, match=expected) as refused:
        format_for(GenerateConfig(prompt_format=str(template)))
    assert "\n" not in str(refused.value)


def test_formats_that_would_lose_steps_or_examples_are_refused(tmp_path):
    with pytest.raises(PromptFormatError, match="neither plain, chat nor a template file"):
        format_for(GenerateConfig(prompt_format="chatml"))
    with pytest.raises(PromptFormatError, match=r"separator ' \| ' is not a step boundary"):
        format_for(GenerateConfig(prompt_format="chat", step_separator=" | "))
    no_steps = few_shot_file(tmp_path, [{"problem": "1 + 1?", "solution": "$\\boxed{2}$"}])
    with pytest.raises(PromptFormatError, match="row 1 has no steps to show"):
        format_for(GenerateConfig(prompt_format="chat", few_shot_file=no_steps))


def test_chat_prompts_render_with_the_tokenizers_template_and_key_the_cache_by_their_content():
    from tasks.policies.chat_model import build_chat_tokenizer

    tokenizer = build_chat_tokenizer(["Step 1: 1 + 1 = 2"], vocab_size=300)
    prompt = ChatPrompt((("system", "S"), ("user", "Q?")), "Step 1: 2\n\n")
    assert render_chat(tokenizer, prompt) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\nStep 1: 2\n\n")
    assert prompt_key("plain text") == "plain text"
    assert prompt_key(prompt) != prompt_key(ChatPrompt(prompt.messages, "Step 1: 3\n\n"))
    tokenizer.chat_template = None
    with pytest.raises(PromptFormatError, match="has no chat template: use --prompt-format plain"):
        render_chat(tokenizer, prompt)
