"""From a model's reply to the program the Coder tests: the code in it, joined with the prompt.

Small models wrap code in prose, fence it or not, write a whole function or only its body, and
add demo code under ``if __name__ == "__main__":``. These functions find the code and build one
program from it and the prompt (whose imports and helpers it may need). Checking the shape only
ever compiles the code; it runs only in the sandbox.
"""

from __future__ import annotations

import ast
import re
import textwrap

_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_CODE_LINE = re.compile(r"^(async\s+def|def|class|import|from|@)\b")
_ANY_CODE = re.compile(r"^\s*(def|return|for|while|if|import|from|class)\b", re.M)


def parses(code: str) -> bool:
    """Whether ``code`` compiles (to bytecode, never run: that only happens in the sandbox)."""
    try:
        compile(code, "<reply>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def defines(code: str, name: str | None) -> bool:
    """Whether ``code`` defines ``name`` (any top-level function when name is None)."""
    target = re.escape(name) if name else r"\w+"
    return re.search(rf"^(async\s+)?def\s+{target}\s*\(", code, re.M) is not None


def code_from_reply(reply: str, entry_point: str | None = None) -> str | None:
    """The code in a model's reply: a fenced block (the one defining ``entry_point`` first), or
    the reply itself with prose trimmed off; None when there is no code at all."""
    blocks = [
        m[2]
        for m in _FENCE.finditer(reply)
        if m[1].lower() in ("", "python", "py", "python3") and m[2].strip()
    ]
    if blocks:
        return next(
            (b for b in blocks if defines(textwrap.dedent(b), entry_point)),
            next((b for b in blocks if parses(textwrap.dedent(b))), blocks[0]),
        )
    if not reply.strip():
        return None
    if parses(reply) or parses(textwrap.dedent(reply)):
        return reply
    lines = reply.splitlines()
    start = next((i for i, line in enumerate(lines) if _CODE_LINE.match(line)), None)
    if start is not None:  # prose before the code, maybe after it: cut it off
        for end in range(len(lines), start, -1):
            candidate = "\n".join(lines[start:end]) + "\n"
            if parses(candidate):
                return candidate
    return reply if _ANY_CODE.search(reply) else None


def assemble(prompt: str, code: str, entry_point: str | None = None) -> str:
    """The program to test: the model's code joined with the prompt.

    A whole function goes after the prompt (whose imports and helpers it may need; its own
    definition replaces the prompt's stub). A bare body is indented under the prompt's
    signature. ``if __name__ == "__main__":`` blocks are dropped: the sandbox runs the program
    as ``__main__``, and demo code there (``input()``, prints) is not what is being tested.
    """
    head = prompt.rstrip() + "\n"
    stub = head if parses(head) else head + "    pass\n"  # a signature without a docstring
    prompt_is_code = is_function_prompt(prompt)
    dedented = textwrap.dedent(code).strip("\n") + "\n"
    whole = defines(dedented, entry_point) or (defines(dedented, None) and parses(dedented))
    if not prompt_is_code:
        program = dedented
    elif whole:
        program = f"{stub}\n\n{dedented}"
    else:  # a body for the prompt's last function
        body = code.strip("\n") + "\n"
        if not body[:1].isspace():
            body = textwrap.indent(dedented, "    ")
        program = head + body
        if not parses(program) and parses(dedented):
            program = f"{stub}\n\n{dedented}"
    return drop_main_block(program)


def program_from_reply(
    prompt: str, reply: str, entry_point: str | None, *, completion: bool = False
) -> str | None:
    """The program to test from one reply, or None when the reply holds no code.

    ``completion``: the reply continues the prompt's own code (a base model's completion), so
    the program is the prompt followed by the reply.
    """
    if completion:
        return drop_main_block(prompt + reply) if reply.strip() else None
    code = code_from_reply(reply, entry_point)
    return None if code is None else assemble(prompt, code, entry_point)


def is_function_prompt(prompt: str) -> bool:
    """Whether the prompt is Python ending in a function to complete (HumanEval style)."""
    head = prompt.rstrip() + "\n"
    return defines(prompt, None) and (parses(head) or parses(head + "    pass\n"))


def drop_main_block(program: str) -> str:
    """``program`` without its top-level ``if __name__ == ...:`` blocks."""
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError):
        return program
    lines = program.splitlines(keepends=True)
    for node in reversed(tree.body):
        test = node.test if isinstance(node, ast.If) else None
        if isinstance(test, ast.Compare) and getattr(test.left, "id", None) == "__name__":
            del lines[node.lineno - 1 : node.end_lineno]
    return "".join(lines)


def entry_point_of(prompt: str) -> str | None:
    """The name of the prompt's last function, the one a HumanEval prompt asks to complete."""
    names = re.findall(r"^(?:async\s+)?def\s+(\w+)\s*\(", prompt, re.M)
    return names[-1] if names else None


__all__ = [
    "assemble",
    "code_from_reply",
    "defines",
    "drop_main_block",
    "entry_point_of",
    "is_function_prompt",
    "parses",
    "program_from_reply",
]
