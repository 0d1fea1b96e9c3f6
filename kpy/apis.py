"""Print the table of supported APIs and versions, from the handler registry (for README.md)."""

from __future__ import annotations

from kpy.handlers.registry import REGISTRY

NOTES = {
    24: " (v4+: the batched and verify-only form brokers send)",
    26: " (v5, transaction.version 2, not served)",
    27: " (the admin client's abort; v0 was removed in Kafka 4)",
    28: " (v5, transaction.version 2, not served)",
}


def table() -> str:
    lines = ["| API | key | versions |", "|---|---|---|"]
    for reg in sorted(REGISTRY.values(), key=lambda r: r.api_key):
        lines.append(
            f"| {reg.name} | {reg.api_key} | {reg.min_version}-{reg.max_version}"
            f"{NOTES.get(reg.api_key, '')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
