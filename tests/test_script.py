"""The script language: tags, pauses, voices, escapes, errors with positions, splitting of long speech."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.narration import emotions
from bot.narration.script import (
    DEFAULT_PAUSE_S,
    Pause,
    ScriptError,
    Speech,
    estimate_seconds,
    parse_script,
)


def unescape(source: str) -> str:
    return " ".join(re.sub(r"\\([\[\]])", r"\1", source).split())


def test_emotions_apply_until_the_next_tag_and_free_form_tags_are_instructions():
    script = parse_script("[whispering] One. Two. [Pause] Three. [A very old pirate] Four. [neutral] Five.")
    speeches = script.speeches
    assert [s.text for s in speeches] == ["One. Two.", "Three.", "Four.", "Five."]
    assert speeches[0].emotion == speeches[1].emotion == "whispering"
    assert speeches[1].instruct == emotions.EMOTIONS["whispering"]
    assert speeches[2].emotion is None and speeches[2].instruct == "A very old pirate"
    assert speeches[3].instruct is None


def test_emotion_tags_are_case_insensitive_and_aliases_resolve():
    a, b, c = parse_script("[EXCITED] a [Excited] b [shout] c").speeches
    assert a.instruct == b.instruct == emotions.EMOTIONS["excited"]
    assert c.emotion == "shouting"


def test_curated_table_has_about_twenty_emotions_with_instructions():
    named = [k for k, v in emotions.EMOTIONS.items() if v]
    assert len(named) >= 20
    assert all(v.endswith(".") and len(v) > 20 for v in map(emotions.EMOTIONS.get, named))
    assert all(target in emotions.EMOTIONS for target in emotions.ALIASES.values())


@pytest.mark.parametrize(
    ("tag", "seconds"),
    [("[Pause]", DEFAULT_PAUSE_S), ("[pause 1.5s]", 1.5), ("[Pause 500ms]", 0.5), ("[PAUSE 2]", 2.0),
     ("[Pause 10s]", 10.0), ("[pause  .25 seconds]", 0.25)],
)  # fmt: skip
def test_pauses(tag, seconds):
    script = parse_script(f"Hi. {tag} There.")
    pause = script.items[1]
    assert isinstance(pause, Pause)
    assert pause.seconds == pytest.approx(seconds)
    assert script.source[pause.start : pause.end] == tag


def test_voice_switch_resets_emotion_and_lists_voices():
    script = parse_script("[Angry] Out! [@Bob] Why? [@bob] [Sad] Fine. [@alice] Bye.")
    speeches = script.speeches
    assert [(s.voice, s.emotion) for s in speeches] == [(None, "angry"), ("Bob", None), ("bob", "sad"), ("alice", None)]
    assert script.voices == ("bob", "alice")


def test_escaped_brackets_are_text_and_lone_closing_bracket_is_text():
    (speech,) = parse_script(r"Use \[Calm\] literally ] ok").speeches
    assert speech.text == "Use [Calm] literally ] ok"


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("Hello [Calm", 6, "never closed"),
        ("Hi [] there", 3, "empty tag"),
        ("Hi [   ] there", 3, "empty tag"),
        ("Hi [a [b] c", 3, "never closed"),
        ("Hi. [Pause 10.5s] there", 4, "too long"),
        ("Hi. [Pause 20000ms] there", 4, "too long"),
        ("Hi. [Pause later] there", 4, "not a pause"),
        ("Hi [@] there", 3, "names no voice"),
        ("Hi [@ghost] there", 3, "unknown voice"),
        ("[Calm] ... [Pause]", 0, "nothing to say"),
    ],
)
def test_errors_name_position_and_reason(text, position, words):
    with pytest.raises(ScriptError) as info:
        parse_script(text, voice_exists=lambda name: name.lower() == "bob")
    assert info.value.position == position
    assert words in info.value.reason
    assert f"character {position + 1}" in str(info.value)


def test_limits_on_length_and_segments():
    with pytest.raises(ScriptError, match="limit is 10") as info:
        parse_script("x" * 11, max_chars=10)
    assert info.value.position == 10
    assert "NARRATOR_MAX_SCRIPT_CHARS" in info.value.reason  # the operator knows which setting it is
    text = "a [Pause] b [Pause] c"
    with pytest.raises(ScriptError, match="limit is 4") as info:
        parse_script(text, max_segments=4)
    assert info.value.position == text.index("c")
    assert len(parse_script(text, max_segments=5).items) == 5


def test_long_speech_is_split_at_sentence_boundaries():
    sentences = [f"Sentence number {k} is here and it keeps going for a while." for k in range(40)]
    text = " ".join(sentences)
    script = parse_script(text, max_chars=10_000)
    pieces = script.speeches
    assert len(pieces) > 1
    assert all(estimate_seconds(p.text) <= 20.0 for p in pieces)
    assert all(p.text.endswith(".") for p in pieces)  # cut after a sentence, never inside one
    assert " ".join(p.text for p in pieces) == text


def test_run_on_sentence_is_split_at_clauses_then_words():
    text = ", ".join(f"clause {k} of a very long sentence" for k in range(30)) + "."
    pieces = parse_script(text, max_chars=10_000, max_piece_seconds=5.0).speeches
    assert all(estimate_seconds(p.text) <= 5.0 for p in pieces)
    assert " ".join(p.text for p in pieces) == text
    words = parse_script("word " * 60, max_piece_seconds=3.0).speeches
    assert all(estimate_seconds(p.text) <= 3.0 for p in words) and len(words) > 1


def test_cjk_length_estimate_is_slower_per_character():
    assert estimate_seconds("你好世界") > estimate_seconds("abcd") * 2


# -- properties ----------------------------------------------------------------------------------------------------

ALPHABET = st.sampled_from(list("ab .!?,[]\\@ 你\n") + ["Pause", "pause 2s", "calm", "@bob", "500ms"])
raw_scripts = st.lists(ALPHABET, max_size=60).map("".join)


def check_structure(script) -> None:
    previous_end = 0
    for item in script.items:
        assert 0 <= previous_end <= item.start < item.end <= len(script.source)
        previous_end = item.end
        if isinstance(item, Speech):
            assert item.text and item.text == unescape(script.source[item.start : item.end])
        else:
            assert script.source[item.start] == "[" and script.source[item.end - 1] == "]"
            assert 0 <= item.seconds <= 10


@settings(max_examples=300, deadline=None)
@given(raw_scripts, st.integers(1, 80), st.integers(1, 8))
def test_parser_never_crashes_and_positions_are_correct(text, max_chars, max_segments):
    try:
        script = parse_script(text, max_chars=max_chars, max_segments=max_segments, max_piece_seconds=1.0)
    except ScriptError as error:
        assert 0 <= error.position <= len(text)
        assert error.reason
        return
    assert len(text) <= max_chars and len(script.items) <= max_segments
    check_structure(script)


words = st.text(alphabet="abcdefgh", min_size=1, max_size=8)
tokens = st.one_of(
    st.lists(words, min_size=1, max_size=6).map(lambda ws: ("say", " ".join(ws) + ".")),
    st.sampled_from(sorted(emotions.EMOTIONS)).map(lambda e: ("tag", e)),
    st.integers(0, 10_000).map(lambda ms: ("pause", ms)),
    st.sampled_from(["bob", "Alice"]).map(lambda v: ("voice", v)),
)


def render_tokens(parts) -> str:
    out = []
    for kind, value in parts:
        out.append({"say": "{}", "tag": "[{}]", "pause": "[Pause {}ms]", "voice": "[@{}]"}[kind].format(value))
    return " ".join(out)


@settings(max_examples=200, deadline=None)
@given(st.lists(tokens, min_size=1, max_size=12))
def test_generated_scripts_round_trip(parts):
    text = render_tokens(parts)
    if not any(kind == "say" for kind, _ in parts):
        with pytest.raises(ScriptError):
            parse_script(text)
        return
    script = parse_script(text, max_chars=10_000, max_segments=100, max_pause_total_s=1000)
    check_structure(script)
    assert [round(p.seconds * 1000) for p in script.items if isinstance(p, Pause)] == [
        v for k, v in parts if k == "pause"
    ]
    # The model of the language: text runs until the next tag; an emotion holds until the next emotion tag and a
    # voice switch resets it.
    emotion, voice, expected, run = None, None, [], []
    for kind, value in [*parts, ("end", None)]:
        if kind == "say":
            run.append(value)
            continue
        if run:
            expected.append((" ".join(run), voice, emotion))
            run = []
        if kind == "tag":
            emotion = None if value == "neutral" else value
        elif kind == "voice":
            emotion, voice = None, value
    assert [(s.text, s.voice, s.emotion) for s in script.speeches] == expected


# -- bounds against hostile scripts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("unit", "seconds"), [("5MS", 0.005), ("5Ms", 0.005), ("5mS", 0.005), ("5 S", 5.0),
                                               ("2 SECONDS", 2.0), ("1.5Sec", 1.5)])  # fmt: skip
def test_pause_units_are_case_insensitive(unit, seconds):
    (pause,) = [i for i in parse_script(f"a [Pause {unit}] b").items if isinstance(i, Pause)]
    assert pause.seconds == pytest.approx(seconds)


def test_total_pause_is_capped_at_the_tag_that_crosses_it():
    flood = "[Pause 10s]" * 63 + "a"  # 630 s of silence from 694 characters: free to render, long to play
    with pytest.raises(ScriptError, match="add up to more than 30 s") as info:
        parse_script(flood)
    assert info.value.position == 3 * len("[Pause 10s]")  # the fourth tag is the first over 30 s
    assert "NARRATOR_MAX_PAUSE_TOTAL_S" in info.value.reason
    assert parse_script("[Pause 10s]" * 3 + "a").pause_seconds == pytest.approx(30.0)  # exactly the cap is fine
    with pytest.raises(ScriptError, match="more than 5 s"):
        parse_script("a [Pause 3s] b [Pause 3s] c", max_pause_total_s=5)
    with pytest.raises(ScriptError, match="more than 0 s"):
        parse_script("a [Pause 1ms] b", max_pause_total_s=0)


@pytest.mark.parametrize(
    ("text", "position", "code"),
    [("ab\x07cd", 2, "U+0007"), ("hi \x00", 3, "U+0000"), ("\x1b[31m red", 0, "U+001B"), ("ok\x7f", 2, "U+007F"),
     ("x \x85 y", 2, "U+0085"), ("a \ud800 b", 2, "U+D800"), ("[Calm] lone \udfff", 12, "U+DFFF")],
)  # fmt: skip
def test_control_characters_and_lone_surrogates_are_refused_with_their_position(text, position, code):
    with pytest.raises(ScriptError) as info:
        parse_script(text)
    assert info.value.position == position
    assert code in info.value.reason and "delete it" in info.value.reason


def test_newlines_tabs_and_ordinary_unicode_pass():
    (speech,) = parse_script("Line one,\n\tline two,\r\nthree 😀 ñ 你好 \u200d.").speeches
    assert speech.text == "Line one, line two, three 😀 ñ 你好 \u200d."


def test_visible_replaces_only_what_the_parser_refuses():
    from bot.narration.script import visible

    assert visible("a\x07b\ud800c\nd\te😀") == "a?b?c\nd\te😀"
    assert visible("a\ud800").encode("utf-8")  # quotable back to the user
