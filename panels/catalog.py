"""The site-wide providers that need no clicking: one per API key found in the
environment, one per bundled local model, each with its shipped model list. A bundled
model's tool support (`supports_tools`, `tool_calls_in_text`) is its LocalModel's.

Prices are USD per million tokens as published when this list was written; they
go stale, which is why OpenRouter's live list can be synced (sync_openrouter).
"""

import os
from dataclasses import dataclass
from decimal import Decimal

from . import local_models


@dataclass(frozen=True)
class HostedProvider:
    env_var: str
    name: str
    kind: str
    base_url: str
    # (model id, display name, context length, input $/M, output $/M, tools)
    models: tuple[tuple[str, str, int, str, str, bool], ...]


HOSTED = (
    HostedProvider(
        "OPENROUTER_API_KEY",
        "OpenRouter",
        "openai",
        "https://openrouter.ai/api/v1",
        (
            ("openai/gpt-4o-mini", "GPT-4o mini", 128_000, "0.15", "0.60", True),
            ("openai/gpt-4.1", "GPT-4.1", 1_047_576, "2.00", "8.00", True),
            ("anthropic/claude-sonnet-4", "Claude Sonnet 4", 200_000, "3.00", "15.00", True),
            ("anthropic/claude-3.5-haiku", "Claude 3.5 Haiku", 200_000, "0.80", "4.00", True),
            ("google/gemini-2.5-flash", "Gemini 2.5 Flash", 1_048_576, "0.30", "2.50", True),
            ("deepseek/deepseek-chat", "DeepSeek V3", 163_840, "0.30", "0.85", True),
            ("meta-llama/llama-3.3-70b-instruct", "Llama 3.3 70B", 131_072, "0.13", "0.40", True),
            ("qwen/qwen-2.5-72b-instruct", "Qwen2.5 72B", 32_768, "0.12", "0.39", True),
        ),
    ),
    HostedProvider(
        "OPENAI_API_KEY",
        "OpenAI",
        "openai",
        "https://api.openai.com/v1",
        (
            ("gpt-4o-mini", "GPT-4o mini", 128_000, "0.15", "0.60", True),
            ("gpt-4.1", "GPT-4.1", 1_047_576, "2.00", "8.00", True),
            ("gpt-4.1-mini", "GPT-4.1 mini", 1_047_576, "0.40", "1.60", True),
        ),
    ),
    HostedProvider(
        "ANTHROPIC_API_KEY",
        "Anthropic",
        "anthropic",
        "https://api.anthropic.com/v1",
        (
            ("claude-sonnet-4-20250514", "Claude Sonnet 4", 200_000, "3.00", "15.00", True),
            ("claude-3-5-haiku-latest", "Claude 3.5 Haiku", 200_000, "0.80", "4.00", True),
        ),
    ),
    HostedProvider(
        "GEMINI_API_KEY",
        "Google Gemini",
        "openai",
        "https://generativelanguage.googleapis.com/v1beta/openai",
        (
            ("gemini-2.5-flash", "Gemini 2.5 Flash", 1_048_576, "0.30", "2.50", True),
            ("gemini-2.5-pro", "Gemini 2.5 Pro", 1_048_576, "1.25", "10.00", True),
        ),
    ),
    HostedProvider(
        "DEEPSEEK_API_KEY",
        "DeepSeek",
        "openai",
        "https://api.deepseek.com/v1",
        (
            ("deepseek-chat", "DeepSeek V3", 64_000, "0.27", "1.10", True),
            ("deepseek-reasoner", "DeepSeek R1", 64_000, "0.55", "2.19", False),
        ),
    ),
    HostedProvider(
        "GROQ_API_KEY",
        "Groq",
        "openai",
        "https://api.groq.com/openai/v1",
        (
            ("llama-3.3-70b-versatile", "Llama 3.3 70B (Groq)", 131_072, "0.59", "0.79", True),
            ("llama-3.1-8b-instant", "Llama 3.1 8B (Groq)", 131_072, "0.05", "0.08", True),
        ),
    ),
    HostedProvider(
        "TOGETHER_API_KEY",
        "Together",
        "openai",
        "https://api.together.xyz/v1",
        (
            (
                "meta-llama/Llama-3.3-70B-Instruct-Turbo",
                "Llama 3.3 70B (Together)",
                131_072,
                "0.88",
                "0.88",
                True,
            ),
            (
                "Qwen/Qwen2.5-72B-Instruct-Turbo",
                "Qwen2.5 72B (Together)",
                32_768,
                "1.20",
                "1.20",
                True,
            ),
        ),
    ),
    HostedProvider(
        "MISTRAL_API_KEY",
        "Mistral",
        "openai",
        "https://api.mistral.ai/v1",
        (
            ("mistral-small-latest", "Mistral Small", 32_000, "0.10", "0.30", True),
            ("mistral-large-latest", "Mistral Large", 128_000, "2.00", "6.00", True),
        ),
    ),
)


def sync_site_providers() -> list[str]:
    """Create or update the providers the environment and the bundled models imply.
    Idempotent; returns what it did, in words."""
    from .models import CatalogModel, Provider

    done: list[str] = []
    for hosted in HOSTED:
        key = os.environ.get(hosted.env_var, "").strip()
        if not key:
            continue
        base_url = os.environ.get(hosted.env_var.replace("_API_KEY", "_BASE_URL"), hosted.base_url)
        provider, _ = Provider.objects.get_or_create(
            owner=None,
            name=hosted.name,
            defaults={"kind": hosted.kind, "base_url": base_url, "source": Provider.Source.ENV},
        )
        provider.kind, provider.base_url, provider.is_active = hosted.kind, base_url, True
        provider.set_api_key(key)
        provider.save()
        for model_id, name, context, price_in, price_out, tools in hosted.models:
            CatalogModel.objects.get_or_create(
                provider=provider,
                model_id=model_id,
                defaults={
                    "display_name": name,
                    "context_length": context,
                    "input_price": Decimal(price_in),
                    "output_price": Decimal(price_out),
                    "supports_tools": tools,
                    "source": CatalogModel.Source.CURATED,
                },
            )
        done.append(f"{hosted.name}: key from {hosted.env_var}")

    for model in local_models.LOCAL_MODELS.values():
        enabled = local_models.get(model.key) is not None
        provider, _ = Provider.objects.update_or_create(
            owner=None,
            local_model_key=model.key,
            defaults={
                "name": f"Local · {model.display_name.removesuffix(' (local)')}",
                "kind": Provider.Kind.OPENAI,
                "base_url": model.base_url,
                "source": Provider.Source.LOCAL,
                "is_active": enabled,
            },
        )
        CatalogModel.objects.update_or_create(
            provider=provider,
            model_id=model.key,
            defaults={
                "display_name": model.display_name,
                "context_length": model.served_context,
                "input_price": Decimal(0),
                "output_price": Decimal(0),
                "supports_tools": model.supports_tools,
                "tool_calls_in_text": model.tool_calls_in_text,
                "source": CatalogModel.Source.LOCAL,
            },
        )
        done.append(f"{model.display_name}: {model.base_url}")
    return done
