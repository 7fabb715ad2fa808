"""A fixed greedy workload through the official `openai` client, printed as JSON: completions
with their tokens, a chat completion, and concurrent streams. test_multihost.py runs it inside a
network namespace (`ip netns exec NS python multihost_client.py URL`), and against a one-rank
server for the reference, so both sides go through the same client code."""
import json
import sys
import threading

import openai

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a land far away,"]
SUBJECTS = ["cats", "the sea", "winter"]


def main(base_url):
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    model = client.models.list().data[0].id
    out = {"completions": [], "chat": None, "streams": [None] * len(SUBJECTS)}
    for p in PROMPTS:
        r = client.completions.create(model=model, prompt=p, max_tokens=12, temperature=0, logprobs=0)
        out["completions"].append({"tokens": r.choices[0].logprobs.tokens, "text": r.choices[0].text,
                                   "finish": r.choices[0].finish_reason})
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Name a fruit."}],
                                       max_tokens=12, temperature=0)
    out["chat"] = r.choices[0].message.content

    def stream(i):
        text = ""
        for chunk in client.completions.create(model=model, prompt=f"A short story about {SUBJECTS[i]}:",
                                               max_tokens=8 + 2 * i, temperature=0, stream=True):
            text += chunk.choices[0].text or ""
        out["streams"][i] = text

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(len(SUBJECTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
