"""Chat prompts of every supported family against the real Jinja templates rendered by jinja2.

The reference renders each template the way transformers' apply_chat_template does: jinja2's
ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the loopcontrols extension,
`raise_exception` raising, and bos_token, eos_token, add_generation_prompt passed in. SmolLM2's
template is read from the model file; the others are the official templates of the model cards
(typed out here, as their model files are not at hand). Outputs must be byte-identical; where the
template raises, ours must report an error. A file with no template (Gemma 3's GGUF) gets its
family's, chosen by architecture: checked against the same typed-out templates.
"""
import json
import subprocess

import gguf
import jinja2
import jinja2.ext
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tokenizer_refs import MODEL, SOURCE_DIR, TOOL, encode_all, write_gguf_tokenizer

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


def render_ours(requests, model=MODEL):
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in requests)
    proc = subprocess.run([str(TOOL), "--model", str(model), "chat"], input=payload.encode("utf-8"),
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


GEMMA3_MODEL = SOURCE_DIR / "models" / "gemma-3-270m-q4_k_m.gguf"


def tokenizer_only_gguf(path, arch):
    """A SentencePiece vocabulary with Gemma's markers and no tokenizer.chat_template."""
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "\u2581", "a"]
    write_gguf_tokenizer(path, model="llama", tokens=tokens, types=[3, 3, 3, 3, 3, 3, 1, 1], scores=[0.0] * 8,
                         bos=2, eos=1, unk=3, add_bos=True, arch=arch)


def info_of(model):
    return json.loads(subprocess.run([str(TOOL), "--model", str(model), "info"], capture_output=True,
                                     check=True).stdout)


@pytest.mark.parametrize("arch,official", [("gemma", GEMMA), ("gemma2", GEMMA), ("gemma3", GEMMA3), ("llama", None)])
def test_template_chosen_by_architecture(arch, official, tmp_path):
    # A file that ships no template gets its family's (general.architecture); others get none.
    path = tmp_path / f"{arch}.gguf"
    tokenizer_only_gguf(path, arch)
    assert info_of(path)["architecture"] == arch
    requests, expected = [], []
    for conv in CONVERSATIONS:
        messages = [{"role": r, "content": c} for r, c in conv]
        for agp in (True, False):
            requests.append({"messages": messages, "add_generation_prompt": agp})
            try:
                expected.append(render_reference(official, messages, agp, "<bos>", "<eos>") if official else None)
            except TemplateError:
                expected.append(None)
    got = render_ours(requests, model=path)
    assert sum(e is not None for e in expected) > (10 if official else -1)
    for req, exp, out in zip(requests, expected, got):
        if exp is None:
            assert "error" in out, f"{arch}: expected an error, got {out!r} for {req['messages']}"
        else:
            assert out.get("prompt") == exp, f"{arch} {req}: {out}"


@pytest.mark.skipif(not GEMMA3_MODEL.is_file(), reason=f"{GEMMA3_MODEL} absent (scripts/setup.sh assembles it)")
def test_gemma3_file_prompt_has_one_bos():
    # The real Gemma 3 file has no template: Gemma 3's is chosen, and it writes <bos> itself, so
    # the prompt's ids (as jarvis-cli and the server encode a prompt that starts with BOS: no
    # add_bos) start with exactly one BOS, then <start_of_turn>.
    info = info_of(GEMMA3_MODEL)
    assert info["architecture"] == "gemma3" and info["add_bos"] and "first_user_prefix" in info["chat_template"]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    out = render_ours([{"messages": messages}], model=GEMMA3_MODEL)[0]
    assert out["prompt"] == render_reference(GEMMA3, messages, True, "<bos>", "<eos>")
    assert out["prompt"] == "<bos><start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n<start_of_turn>model\n"
    ids = encode_all(GEMMA3_MODEL, [out["prompt"]], parse_special=True, add_bos=False)[0]
    assert ids[:2] == [info["bos_id"], 105] and ids.count(info["bos_id"]) == 1
    assert ids[-3:] == encode_all(GEMMA3_MODEL, ["<start_of_turn>model\n"])[0]
