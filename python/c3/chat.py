"""Chat templates, rendered from the model directory's Jinja template the way transformers renders them."""
from __future__ import annotations

import json
import os

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


def load_chat_template(directory: str) -> str:
    """The template from chat_template.jinja, or from tokenizer_config.json's chat_template."""
    path = os.path.join(directory, "chat_template.jinja")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    config_path = os.path.join(directory, "tokenizer_config.json")
    if os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as handle:
            template = json.load(handle).get("chat_template")
        if isinstance(template, str):
            return template
    raise FileNotFoundError(f"{directory}: no chat template (chat_template.jinja or tokenizer_config.json)")


def apply_chat_template(template: str, messages: list, add_generation_prompt: bool = True, **variables) -> str:
    """Renders messages ([{'role': ..., 'content': ...}]) with the same Jinja settings as transformers."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.globals["raise_exception"] = raise_exception
    return environment.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                    **variables)
