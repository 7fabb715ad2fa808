"""Chat prompts of every supported family against the real Jinja templates rendered by jinja2.

The reference renders each template the way transformers' apply_chat_template does: jinja2's
ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the loopcontrols extension,
`raise_exception` raising, and bos_token, eos_token, add_generation_prompt passed in. SmolLM2's
template is read from the model file; the others are the official templates of the model cards
(typed out here, as their model files are not at hand). Outputs must be byte-identical; where the
template raises, ours must report an error.
"""
import json
import subprocess

import gguf
import jinja2
import jinja2.ext
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tokenizer_refs import MODEL, TOOL

# Qwen/Qwen2-*-Instruct
QWEN2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
         "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
         "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
         "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
# Plain ChatML (no default system turn; e.g. OpenHermes)
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
# meta-llama/Llama-2-7b-chat-hf
LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
          "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
          "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
          "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
          "{% if loop.index0 == 0 and system_message != false %}"
          "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
          "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
          "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
          "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
# meta-llama/Meta-Llama-3-8B-Instruct
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}"
          "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
          "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
          "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
# google/gemma-2b-it, gemma-2-2b-it
GEMMA = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
         "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
         "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
         "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
         "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
         "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")
# google/gemma-3-*-it (text content path; system merged into the first user turn)
GEMMA3 = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""
# HuggingFaceH4/zephyr-7b-beta and TinyLlama/TinyLlama-1.1B-Chat-v1.0 (same template)
ZEPHYR = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
          "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
          "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
          "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")


def smollm2_template():
    r = gguf.GGUFReader(str(MODEL))
    f = r.fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode("utf-8")


# (name, template, bos, eos, expected format name)
FAMILIES = [
    ("smollm2", None, "<|im_start|>", "<|im_end|>", "chatml"),
    ("qwen2", QWEN2, "", "<|im_end|>", "chatml"),
    ("chatml", CHATML, "<s>", "</s>", "chatml"),
    ("llama2", LLAMA2, "<s>", "</s>", "llama2"),
    ("llama3", LLAMA3, "<|begin_of_text|>", "<|eot_id|>", "llama3"),
    ("gemma", GEMMA, "<bos>", "<eos>", "gemma"),
    ("gemma3", GEMMA3, "<bos>", "<eos>", "gemma"),
    ("zephyr", ZEPHYR, "<s>", "</s>", "zephyr"),
]

S, U, A = "system", "user", "assistant"
CONVERSATIONS = [
    [(U, "Hello!")],
    [(S, "You are terse."), (U, "Hi")],
    [(U, "What is 2+2?"), (A, "4"), (U, "And 3+3?")],
    [(S, "Be kind."), (U, "Hi"), (A, "Hello! How can I help?"), (U, "Tell me a joke.")],
    [(U, "  héllo 👋 wörld \n\n"), (A, "\t¡hola! 你好\u3000"), (U, "\u00a0nbsp\u00a0 and \x1c sep\x1f")],
    [(S, "  spaced system  \n"), (U, "\nline1\nline2\n")],
    [(U, "first"), (A, "reply")],
    [(U, "one"), (U, "two")],
    [(S, "only system")],
    [(A, "assistant first"), (U, "then user")],
    [(U, "template-looking {{ bos_token }} {% if %} <|im_end|> <start_of_turn> [INST] <</SYS>>")],
    [(U, "")],
    [(S, ""), (U, "empty system")],
    [(U, "مرحبا"), (A, "שלום"), (U, "नमस्ते 🇯🇵👨‍👩‍👧")],
    [(S, "a"), (S, "b"), (U, "two systems")],
    [(U, "x"), ("tool", "tool output"), (A, "done")],
]


class TemplateError(Exception):
    pass


def render_reference(template, messages, add_generation_prompt, bos, eos):
    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, bos_token=bos, eos_token=eos,
                                            add_generation_prompt=add_generation_prompt)


def render_ours(requests):
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in requests)
    proc = subprocess.run([str(TOOL), "--model", str(MODEL), "chat"], input=payload.encode("utf-8"),
                          capture_output=True, timeout=60)
    out = [json.loads(line) for line in proc.stdout.decode("utf-8").split("\n") if line]
    assert len(out) == len(requests), proc.stderr
    return out


@pytest.mark.parametrize("name,template,bos,eos,fmt", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_family_matches_jinja(name, template, bos, eos, fmt):
    template = template or smollm2_template()
    requests, expected = [], []
    for conv in CONVERSATIONS:
        messages = [{"role": r, "content": c} for r, c in conv]
        for agp in (True, False):
            requests.append({"messages": messages, "add_generation_prompt": agp, "template": template,
                             "bos_token": bos, "eos_token": eos})
            try:
                expected.append(render_reference(template, messages, agp, bos, eos))
            except (TemplateError, jinja2.exceptions.UndefinedError):
                expected.append(None)
    got = render_ours(requests)
    raised = 0
    for req, exp, out in zip(requests, expected, got):
        if exp is None:
            raised += 1
            assert "error" in out, f"{name}: template raises but we rendered {out!r} for {req['messages']}"
        else:
            assert "error" not in out, f"{name}: {out['error']} for {req['messages']}"
            assert out["prompt"] == exp, f"{name} agp={req['add_generation_prompt']} {req['messages']}"
            assert out["format"] == fmt
    if name in ("llama2", "gemma", "gemma3"):
        assert raised > 0  # the alternation check is exercised


def test_smollm2_default_system_prompt():
    # The model's own template (no override): the default system turn comes from the GGUF.
    out = render_ours([{"messages": [{"role": "user", "content": "Hi"}], "add_generation_prompt": True}])[0]
    assert out["prompt"] == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                             "Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_rejected_templates_and_requests():
    llama31 = LLAMA3.replace("{% set loop_messages", "{{ 'Cutting Knowledge Date: December 2023' }}{% set loop_messages")
    mistral = "{{ bos_token }}{% for message in messages %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endfor %}"
    user = [{"role": "user", "content": "hi"}]
    out = render_ours([{"messages": user, "template": "{{ messages }}"},
                       {"messages": user, "template": llama31},
                       {"messages": user, "template": mistral},
                       {"messages": [], "template": CHATML}])
    assert all("error" in o for o in out), out
