"""Chat cleanup: each Discord construct -> what is said, tag handling, script safety, the length cut."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.chat.cleanup import (
    CODE_BLOCK,
    LINK,
    CleanupOptions,
    attachments_phrase,
    clean_message,
)
from bot.chat.length import cut_to_seconds, segments_seconds
from bot.chat.markup import Tag, Text, split_script
from bot.chat.message import Attachment, ChatMessage, MappingResolver
from bot.narration.script import Pause, ScriptError, estimate_seconds, parse_script

NAMES = MappingResolver(users={11: "Alice", 12: "Bob 🎸", 13: "[admin] Eve"}, roles={21: "Moderators"},
                        channels={31: "general"})  # fmt: skip
PLAIN = CleanupOptions()
HONOUR = CleanupOptions(honour_tags=True)


def say(content: str, options: CleanupOptions = PLAIN, **fields) -> str | None:
    cleaned = clean_message(ChatMessage(content, **fields), NAMES, options)
    return None if cleaned is None else cleaned.text


def heard(content: str, options: CleanupOptions = PLAIN) -> str:
    """The words the renderer will speak: the cleaned text parsed by the real script parser."""
    cleaned = clean_message(ChatMessage(content), NAMES, options)
    assert cleaned is not None
    return " ".join(s.text for s in parse_script(cleaned.text, max_chars=10_000).speeches)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("look https://example.com/a_b_c?x=1 now", f"look {LINK} now"),
        ("see https://example.com/page.", f"see {LINK}."),
        ("(https://en.wikipedia.org/wiki/Foo_(bar))", f"({LINK})"),
        ("quiet <https://example.com> link", f"quiet {LINK} link"),
        ("two http://a.io and HTTPS://B.IO/x", f"two {LINK} and {LINK}"),
    ],
)
def test_urls_become_a_link(content, expected):
    assert say(content) == expected


def test_code_block_is_a_code_block_and_its_content_is_not_read():
    text = say("try this:\n```py\nsecret = [1, 2]  # **not bold**\n```\nthen run it")
    assert text == f"try this: {CODE_BLOCK} then run it"


def test_inline_code_is_read_as_its_text_without_markdown_processing():
    assert say("run `pip install *foo*` now") == "run pip install *foo* now"
    assert say("double ``a `b` c`` ticks") == "double a `b` c ticks"
    assert say("`see https://x.io`") == f"see {LINK}"


def test_spoilers_are_skipped_even_when_they_hold_other_markup():
    assert say("the killer is ||the butler|| ok") == "the killer is ok"
    assert say("||`code` and <@11> and https://x.io||done") == "done"
    assert say("||all of it||") is None


def test_custom_emoji_become_their_names():
    assert say("nice <:pog_champ:123456789012345678> <a:party_dance:42>") == "nice pog champ party dance"


def test_unicode_emoji_become_their_names_from_the_emoji_library():
    assert say("hi 👋") == "hi waving hand"
    assert say("🇫🇷 👍🏽") == "France thumbs up medium skin tone"
    assert say("family 👨‍👩‍👧") == "family family man woman girl"


def test_mentions_become_display_names_from_the_resolver():
    assert say("hey <@11>, <@!12> and <@13>") == "hey Alice, Bob guitar and \\[admin\\] Eve"
    assert say("ping <@&21> in <#31>") == "ping Moderators in general"
    assert say("@everyone and @here") == "everyone and here"


def test_unknown_mentions_have_neutral_words():
    assert say("<@99> <@&98> <#97>") == "someone a role a channel"


def test_command_and_timestamp_mentions():
    assert say("use </narrate start:123> at <t:1796163567:R>") == "use narrate start at a time"


@pytest.mark.parametrize(
    ("attachments", "phrase"),
    [
        ((Attachment("cat.png", "image/png"),), "sent an image"),
        ((Attachment("notes.txt", "text/plain"),), "sent a file"),
        ((Attachment("IMG_1.JPG"),), "sent an image"),  # no content type: judged by the extension
        ((Attachment("a.png", "image/png"), Attachment("b.gif", "image/gif")), "sent 2 images"),
        ((Attachment("a.png", "image/png"), Attachment("x.zip", "application/zip")), "sent an image and a file"),
        ((Attachment("noextension"),), "sent a file"),
    ],
)
def test_attachments_are_announced_by_kind(attachments, phrase):
    assert attachments_phrase(attachments) == phrase
    cleaned = clean_message(ChatMessage("", attachments=attachments), NAMES)
    assert cleaned.text == phrase and not cleaned.has_words


def test_attachments_follow_the_words_as_their_own_sentence():
    cleaned = clean_message(ChatMessage("look at this", attachments=(Attachment("a.png", "image/png"),)), NAMES)
    assert cleaned.text == "look at this. sent an image" and cleaned.has_words
    cleaned = clean_message(ChatMessage("look!", attachments=(Attachment("a.png", "image/png"),)), NAMES)
    assert cleaned.text == "look! sent an image"


def test_characters_repeated_more_than_three_times_are_capped():
    assert say("sooooooo goooood!!!!!!! hmmm") == "sooo goood!!! hmmm"
    assert say("😂😂😂😂😂😂") == " ".join(["face with tears of joy"] * 3)
    assert say("costs 1000000") == "costs 1000000"  # digits are a number, not a shout


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("**bold** *italic* _also_ __under__ ~~gone~~ ***both***", "bold italic also under gone both"),
        ("**__nested__**", "nested"),
        ("# Big title\n## smaller\nbody", "Big title smaller body"),
        ("-# small print", "small print"),
        ("> quoted line\n>>> block quote", "quoted line block quote"),
        ("- one\n* two\n+ three\n1. four", "one two three 1. four"),
        ("see [the docs](https://docs.example.com/x) please", "see the docs please"),
        ("snake_case_name stays", "snake_case_name stays"),
        ("5 * 3 * 2 = 30", "5 * 3 * 2 = 30"),
        ("escaped \\*stars\\* stay", "escaped *stars* stay"),
        ("unclosed **bold and `tick", "unclosed bold and tick"),
    ],
)
def test_markdown_is_stripped(content, expected):
    assert say(content) == expected


def test_whitespace_is_normalised():
    assert say("  many   spaces\n\n\tand\nlines  ") == "many spaces and lines"


def test_emotion_tags_are_kept_when_the_guild_honours_them():
    text = say("[Excited] we won! [whisper] quietly [Pause 1s] done", HONOUR)
    assert text == "[Excited] we won! [whisper] quietly [Pause 1s] done"
    items = parse_script(text).items
    assert [getattr(i, "emotion", None) for i in items if not isinstance(i, Pause)] == [
        "excited",
        "whispering",
        "whispering",
    ]
    assert any(isinstance(i, Pause) and i.seconds == 1.0 for i in items)


def test_emotion_tags_are_dropped_when_the_guild_does_not_honour_them():
    assert say("[Excited] we won! [Pause 2s] yes") == "we won! yes"


def test_other_brackets_are_read_literally_and_never_become_tags_or_voice_switches():
    for options in (CleanupOptions(), HONOUR):
        text = say("this [citation needed] and [@bob] talks [a very old pirate]", options)
        script = parse_script(text)
        assert all(s.voice is None and s.instruct is None for s in script.speeches)
        assert heard("this [citation needed] and [@bob] talks", options) == "this [citation needed] and [@bob] talks"


def test_an_escaped_tag_is_read_literally_even_when_tags_are_honoured():
    assert heard("\\[Excited] not a tag", HONOUR) == "[Excited] not a tag"


def test_honoured_tags_are_bounded():
    text = say(" ".join(f"[Happy] word{k}" for k in range(40)), HONOUR)
    assert text.count("[Happy]") == 16
    assert len(parse_script(text).items) <= 64


def test_a_pause_the_script_rejects_is_dropped_not_an_error():
    assert say("wait [Pause 60s] what", HONOUR) == "wait what"


@pytest.mark.parametrize("content", ["[", "]", "[[", "a [b", "x ] y [", "\\", "a\\", "\\[", "[]", "[ ]", "[Excited]\\"])
def test_stray_brackets_and_backslashes_never_make_a_script_error(content):
    for options in (CleanupOptions(), HONOUR):
        text = say(content + " word", options)
        parse_script(text)  # raises ScriptError if the escaping were wrong


def test_messages_with_nothing_to_say_are_none():
    for content in ["", "   ", "...", "**", "||hidden||", "[Excited]", "[Pause 2s]", "`   `"]:
        assert say(content) is None, content


def test_long_text_is_cut_at_a_sentence_end_within_the_limit():
    sentence = "This is one sentence of a long message. "
    cleaned = clean_message(ChatMessage(sentence * 40), NAMES, CleanupOptions(max_seconds=10))
    assert cleaned.truncated
    assert cleaned.text.endswith("message.")
    assert estimate_seconds(cleaned.spoken) <= 10
    assert estimate_seconds(cleaned.spoken + " " + sentence) > 10  # as much as fits was kept


def test_long_text_without_sentence_ends_is_cut_at_a_word():
    cleaned = clean_message(ChatMessage("word " * 500), NAMES, CleanupOptions(max_seconds=5))
    assert cleaned.truncated and cleaned.spoken.endswith("word") and estimate_seconds(cleaned.spoken) <= 5


def test_short_text_is_not_cut():
    cleaned = clean_message(ChatMessage("Short. Message."), NAMES, CleanupOptions(max_seconds=5))
    assert not cleaned.truncated and cleaned.text == "Short. Message."


def test_cjk_text_uses_the_cjk_speaking_rate_and_cuts_at_cjk_sentence_ends():
    cleaned = clean_message(ChatMessage("今日は良い天気です。" * 20), NAMES, CleanupOptions(max_seconds=5))
    assert cleaned.truncated and cleaned.text.endswith("。") and estimate_seconds(cleaned.spoken) <= 5


def test_kept_pauses_count_toward_the_limit():
    segments = [Text("a b c. "), Tag("[Pause 4s]"), Text("d e f.")]
    assert segments_seconds(segments) == pytest.approx(4 + estimate_seconds("a b c. d e f."))
    cut, truncated = cut_to_seconds(segments, 4.2)
    assert truncated and cut == [Text("a b c.")]


def test_max_seconds_is_bounded():
    for bad in (4.9, 121, 0):
        with pytest.raises(ValueError, match="5 to 120 seconds"):
            CleanupOptions(max_seconds=bad)


def test_private_use_and_control_characters_from_input_are_ignored():
    assert say("a\U000f0001b\x00c\U0010fffd d") == "ab c d"


def test_huge_messages_are_bounded():
    cleaned = clean_message(ChatMessage("_a " * 50_000), NAMES, CleanupOptions(max_seconds=120))
    assert cleaned.truncated and estimate_seconds(cleaned.spoken) <= 120


def test_split_script_mirrors_the_parser():
    assert split_script("a \\[b\\] [Excited] c [x") == [Text("a [b] "), Tag("[Excited]"), Text(" c "), Tag("[x")]


_ALPHABET = st.sampled_from(list("ab [](){}\\*_~|`#>-:.!?<@&1 \n") + ["[Excited]", "[Pause]", "```", "||", "<@11>"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=40).map("".join), st.booleans())
def test_any_message_cleans_to_a_parseable_script_or_none(content, honour):
    cleaned = clean_message(ChatMessage(content), NAMES, CleanupOptions(honour_tags=honour))
    if cleaned is None:
        return
    try:
        script = parse_script(cleaned.text, max_chars=10_000)
    except ScriptError as error:
        raise AssertionError(f"{content!r} -> {cleaned.text!r}: {error}") from None
    assert all(s.voice is None for s in script.speeches)
