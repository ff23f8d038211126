"""Validation of user tag changes (``Run.add_tags`` / ``remove_tags`` / ``replace_tags``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flowkernel.errors import TaggingError

MAX_TAG_LENGTH = 500
MAX_USER_TAGS = 50


def checked_tag(tag: Any) -> str:
    """``tag`` as a str (UTF-8 bytes are decoded); raises :class:`TaggingError` if invalid."""
    if isinstance(tag, bytes):
        try:
            tag = tag.decode("utf-8")
        except UnicodeDecodeError:
            raise TaggingError(f"tag {tag!r} is not valid UTF-8") from None
    if not isinstance(tag, str):
        raise TaggingError(f"a tag is a string, not {type(tag).__name__} {tag!r}")
    if not tag:
        raise TaggingError("a tag cannot be empty")
    if len(tag) > MAX_TAG_LENGTH:
        raise TaggingError(f"tag {tag[:40]!r}... is longer than {MAX_TAG_LENGTH} characters")
    return tag


def _tag_list(tags: Iterable[Any], what: str) -> list[str]:
    if isinstance(tags, (str, bytes)):
        raise TaggingError(f"{what} takes a list of tags, not the single tag {tags!r}")
    return [checked_tag(t) for t in tags]


def checked_change(run: Any, tags_to_remove: Iterable[Any], tags_to_add: Iterable[Any]):
    """``(remove, add)`` for ``run``: validated, system tags to add dropped (as Metaflow does).

    :raises TaggingError: an invalid tag, a system tag to remove, an empty change, or more
        than 50 user tags afterwards.
    """
    remove = _tag_list(tags_to_remove, "remove")
    add = _tag_list(tags_to_add, "add")
    if not remove and not add:
        raise TaggingError("nothing to change: give at least one tag to add or to remove")
    system = run.system_tags
    protected = sorted(t for t in remove if t in system)
    if protected:
        raise TaggingError(f"system tags cannot be removed: {', '.join(protected)}")
    add = [t for t in dict.fromkeys(add) if t not in system]
    after = (set(run.user_tags) - set(remove)) | set(add)
    if len(after) > MAX_USER_TAGS:
        raise TaggingError(f"a run has at most {MAX_USER_TAGS} user tags ({len(after)} asked)")
    return list(dict.fromkeys(remove)), add
