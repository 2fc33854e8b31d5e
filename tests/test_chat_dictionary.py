"""Pronunciation dictionary: whole-word plain rules, RE2 regex rules, priorities, tags untouched, limits, files."""

from __future__ import annotations

import json
import logging
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.chat.cleanup import CleanupOptions, clean_message
from bot.chat.dictionary import (
    GUILD,
    MAX_GUILD_RULES,
    MAX_MATCHES,
    MAX_PATTERN_CHARS,
    MAX_REPLACEMENT_CHARS,
    MAX_USER_RULES,
    USER,
    Dictionary,
    DictionaryError,
    Rule,
    check_rule,
)
from bot.chat.dictionary_io import MAX_IMPORT_BYTES, DictionaryImportError, export_rules, import_rules
from bot.chat.markup import Tag, split_script
from bot.chat.message import ChatMessage, MappingResolver
from bot.narration.script import ScriptError, parse_script


def apply(text: str, guild=(), user=()) -> str:
    return Dictionary.build(guild, user).apply(text).text


def test_plain_rules_replace_whole_words_case_insensitively():
    rules = [Rule("gg", "good game")]
    assert apply("GG! gg, Gg.", rules) == "good game! good game, good game."
    assert apply("eggs and ggg and gg_x", rules) == "eggs and ggg and gg_x"


def test_plain_rules_match_phrases_across_any_whitespace_and_longest_first():
    rules = [Rule("new", "NEW"), Rule("new   york", "the big apple")]
    assert apply("New York is new", rules) == "the big apple is NEW"
    assert apply("new\n\tyork", rules) == "the big apple"


def test_plain_rules_with_punctuation_ends_need_no_word_edge():
    assert apply("nice :) ok:)", [Rule(":)", "smiley")]) == "nice smiley oksmiley"
    assert apply("I like c++.", [Rule("c++", "c plus plus")]) == "I like c plus plus."


def test_cjk_rules_match_inside_unspaced_text():
    assert apply("東京都に行く", [Rule("東京", "とうきょう")]) == "とうきょう都に行く"


def test_user_rules_win_over_guild_rules():
    guild = [Rule("lol", "laughing out loud"), Rule("brb", "be right back")]
    user = [Rule("LOL", "ha ha")]
    assert apply("lol brb", guild, user) == "ha ha be right back"
    # overlapping, different patterns: the member's still wins the overlap
    assert apply("new york", [Rule("new york", "NYC")], [Rule("york", "YORK")]) == "new YORK"


def test_plain_rules_win_over_regexes_of_the_same_scope():
    rules = [Rule("c.t", "REGEX", regex=True), Rule("cat", "PLAIN")]
    assert apply("cat cut", rules) == "PLAIN REGEX"


def test_replacements_are_never_replaced_again():
    assert apply("a", [Rule("a", "b"), Rule("b", "c")]) == "b"


def test_tags_are_untouched_and_rules_apply_between_them():
    rules = [Rule("happy", "glad"), Rule("pause", "stop"), Rule("bob", "robert")]
    assert apply("[Happy] happy [Pause 1s] pause [@bob] bob", rules) == "[Happy] glad [Pause 1s] stop [@bob] robert"
    assert apply("h[a-z]+y", [Rule("a", "x", regex=True)]) == "h[a-z]+y"  # `[a-z]` is a tag in a script


def test_escaped_brackets_stay_literal_text_and_replacements_cannot_make_tags():
    out = apply("say \\[hi\\] now", [Rule("hi", "hello"), Rule("now", "[Angry] later")])
    assert out == "say \\[hello\\] \\[Angry\\] later"
    speech = parse_script(out).speeches
    assert [s.text for s in speech] == ["say [hello] [Angry] later"] and speech[0].emotion is None


def test_a_replacement_ending_in_a_backslash_does_not_swallow_the_next_tag():
    out = apply("x[Happy] y", [Rule("x", "back\\")])
    happy = [s for s in parse_script(out).speeches if s.emotion == "happy"]
    assert [s.text for s in happy] == ["y"]


def test_regex_rules_use_re2_case_insensitively():
    rules = [Rule(r"colou?r", "hue", regex=True)]
    assert apply("Color colour COLOR", rules) == "hue hue hue"
    assert apply("Color color", [Rule(r"(?-i)color", "hue", regex=True)]) == "Color hue"
    assert apply("x1 x22 x333", [Rule(r"\bx\d{2,}\b", "many", regex=True)]) == "x1 many many"


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1", "not supported"),
        (r"(?<=a)b", "not supported"),
        (r"(?=a)", "not supported"),
        (r"(unclosed", "not supported"),
        (r"a*", "matches empty text"),
        (r".{1000}", "too complex"),
        ("x" * (MAX_PATTERN_CHARS + 1), "the limit is"),
    ],
)
def test_bad_regexes_are_refused_with_a_sentence(pattern, why):
    with pytest.raises(DictionaryError, match=why) as caught:
        check_rule(Rule(pattern, "y", regex=True))
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message


def test_regexes_that_only_match_empty_positions_replace_nothing():
    assert apply("a b", [Rule(r"\b", "X", regex=True)]) == "a b"


def test_hostile_regex_runs_in_linear_time():
    dictionary = Dictionary.build([Rule(r"(a+)+$", "x", regex=True)])
    text = "a" * 5000 + "b"  # catastrophic for a backtracking engine: 2^5000 ways to fail
    started = time.perf_counter()
    result = dictionary.apply(text)
    elapsed = time.perf_counter() - started
    assert result.text == text and result.fired == ()
    assert elapsed < 0.1, f"{elapsed * 1000:.1f} ms"
    assert re.compile(r"(a+)+$").pattern  # (Python's own `re` would not return on this input: not run here)


def test_a_full_dictionary_of_hostile_and_busy_rules_stays_fast():
    hostile = [Rule(rf"(a+)+{k}$", f"x{k}", regex=True) for k in range(MAX_GUILD_RULES // 2)]
    busy = [Rule(rf"a{{{k % 5 + 1}}}", "b", regex=True) for k in range(MAX_GUILD_RULES // 2)]
    user = [Rule(f"word{k}", "w") for k in range(MAX_USER_RULES)]
    dictionary = Dictionary.build(hostile + busy, user)
    text = ("a" * 90 + " ") * 44  # ~4000 characters, the longest message
    started = time.perf_counter()
    result = dictionary.apply(text)
    elapsed = time.perf_counter() - started
    assert sum(f.count for f in result.fired) <= MAX_MATCHES
    assert elapsed < 2.0, f"{elapsed * 1000:.0f} ms"


def test_fired_rules_are_recorded_with_scope_and_count():
    result = Dictionary.build([Rule("brb", "be right back")], [Rule("gg", "good game")]).apply("gg brb gg nope")
    assert sorted((f.scope, f.rule.pattern, f.count) for f in result.fired) == [(GUILD, "brb", 1), (USER, "gg", 2)]
    (user_fired,) = [f for f in result.fired if f.scope == USER]
    assert user_fired.to_dict() == {"scope": "user", "pattern": "gg", "replacement": "good game", "regex": False,
                                    "count": 2}  # fmt: skip
    assert json.dumps([f.to_dict() for f in result.fired])  # sidecar-ready


def test_limits_and_rule_checks():
    assert (MAX_GUILD_RULES, MAX_USER_RULES) == (200, 50)
    with pytest.raises(DictionaryError, match="empty"):
        check_rule(Rule("   ", "x"))
    with pytest.raises(DictionaryError, match=f"limit is {MAX_REPLACEMENT_CHARS}"):
        check_rule(Rule("a", "b" * (MAX_REPLACEMENT_CHARS + 1)))
    assert check_rule(Rule("  new \n york ", " the  big\napple ")) == Rule("new york", "the big apple")


def test_stored_rules_that_no_longer_pass_are_skipped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="bot.chat.dictionary"):
        dictionary = Dictionary.build([Rule(r"(a)\1", "x", regex=True), Rule("ok", "fine")])
    assert dictionary.apply("ok").text == "fine"
    assert "skipping a stored guild dictionary rule" in caplog.text


def test_more_rules_than_the_limits_are_not_used(caplog):
    guild = [Rule(f"g{k}", "G") for k in range(MAX_GUILD_RULES + 1)]
    user = [Rule(f"u{k}", "U") for k in range(MAX_USER_RULES + 1)]
    with caplog.at_level(logging.WARNING, logger="bot.chat.dictionary"):
        dictionary = Dictionary.build(guild, user)
    last_guild, last_user = f"g{MAX_GUILD_RULES}", f"u{MAX_USER_RULES}"
    assert dictionary.apply(f"g0 u0 {last_guild} {last_user}").text == f"G U {last_guild} {last_user}"
    assert "using the first 200" in caplog.text and "using the first 50" in caplog.text


def test_the_dictionary_applies_to_cleaned_chat_and_the_cut_comes_after():
    dictionary = Dictionary.build([Rule("lol", "laughing out loud")], [Rule("ty", "thank you")])
    cleaned = clean_message(ChatMessage("**lol** ty <@1>"), MappingResolver(users={1: "Ty"}), CleanupOptions(),
                            dictionary)  # fmt: skip
    assert cleaned.text == "laughing out loud thank you thank you"
    assert {f.rule.pattern for f in cleaned.fired} == {"lol", "ty"}
    long = clean_message(ChatMessage("lol. " * 100), MappingResolver(), CleanupOptions(max_seconds=5), dictionary)
    assert long.truncated and long.text.endswith("laughing out loud.")


# -- files ------------------------------------------------------------------------------------------------------------


def test_export_then_import_round_trips():
    rules = (Rule("gg", "good game"), Rule(r"colou?r", "hue", regex=True), Rule("naïve", "[sic] naive"))
    text = export_rules(rules)
    assert json.loads(text)[1] == {"pattern": "colou?r", "replacement": "hue", "regex": True}
    assert import_rules(text, limit=MAX_USER_RULES) == rules
    assert import_rules(text.encode("utf-8-sig"), limit=10) == rules
    assert export_rules(()) == "[]\n" and import_rules("[]", limit=1) == ()


def test_regex_may_be_left_out():
    assert import_rules('[{"pattern": "a", "replacement": "b"}]', limit=1) == (Rule("a", "b"),)


def test_every_bad_entry_is_reported_at_once_with_its_line():
    text = "\n".join([
        "[",
        '  {"pattern": "ok", "replacement": "fine"},',
        '  {"pattern": "(a)\\\\1", "replacement": "x", "regex": true},',
        '  "just a string",',
        '  {"pattern": "b", "replacement": 3},',
        '  {"pattern": "OK", "replacement": "dup"},',
        '  {"pattern": "c", "replacement": "d", "colour": "red"},',
        '  {"pattern": "e", "replacement": "f", "regex": "yes"}',
        "]",
    ])  # fmt: skip
    with pytest.raises(DictionaryImportError) as caught:
        import_rules(text, limit=50)
    problems = caught.value.problems
    assert [(p.index, p.line) for p in problems] == [(2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 8)]
    reasons = [p.reason for p in problems]
    assert "not supported" in reasons[0] and "object" in reasons[1] and "`replacement` must be text" in reasons[2]
    assert "already entry 1" in reasons[3] and "unknown field `colour`" in reasons[4] and "true or false" in reasons[5]
    summary = caught.value.summary()
    assert summary.startswith("the file was not imported: 6 problems") and "entry 4 (line 5)" in summary


def test_too_many_rules_is_reported_with_the_other_problems():
    entries = [{"pattern": f"w{k}", "replacement": "x"} for k in range(5)] + [{"pattern": "", "replacement": "x"}]
    with pytest.raises(DictionaryImportError) as caught:
        import_rules(json.dumps(entries), limit=3)
    reasons = [p.reason for p in caught.value.problems]
    assert any("6 rules; there is room for 3" in r for r in reasons) and any("empty" in r for r in reasons)


@pytest.mark.parametrize(
    ("data", "why", "line"),
    [
        ('{"pattern": "a"}', "must be a JSON list", 1),
        ('[\n{"pattern": "a", "replacement": "b"},\n{"pattern": oops}\n]', "not valid JSON", 3),
        ('[{"pattern": "a", "replacement": "b"} {"x": 1}]', "expected `,` or `]`", 1),
        ("[]\n\nextra", "text after the closing", 3),
        (b"[\n\xff\xfe]", "not UTF-8", 2),
        ("", "must be a JSON list", 1),
    ],
)
def test_broken_files_say_where(data, why, line):
    with pytest.raises(DictionaryImportError, match=why) as caught:
        import_rules(data, limit=10)
    assert caught.value.problems[-1].line == line


def test_oversized_files_are_refused_before_parsing():
    with pytest.raises(DictionaryImportError, match="KiB"):
        import_rules(b"[" + b" " * MAX_IMPORT_BYTES + b"]", limit=10)


def test_the_summary_fits_a_discord_message_however_many_problems():
    entries = [{"pattern": "", "replacement": "x"}] * 300
    with pytest.raises(DictionaryImportError) as caught:
        import_rules(json.dumps(entries, indent=1), limit=1000)
    summary = caught.value.summary()
    assert len(caught.value.problems) == 300 and len(summary) <= 1800 and "more" in summary.splitlines()[-1]


# -- scripts survive the dictionary -------------------------------------------------------------------------------------

_SCRIPT_PIECES = st.sampled_from(["a", "b", " ", "\\[", "\\]", "\\", "]", "[Excited]", "[Pause 1s]", "[@bob]", "gg",
                                  "x.", "é", "東"])  # fmt: skip
_HOSTILE = Dictionary.build([Rule("gg", "[Angry] \\"), Rule("a", "]"), Rule("b", "\\["), Rule(r"x\.", "[", regex=True)])


def _speech(source: str) -> list[tuple[str | None, str | None]]:
    """What the parser makes of the tags: (emotion, voice) of each speech, and the pauses."""
    return [(getattr(i, "emotion", None), getattr(i, "voice", None)) for i in parse_script(source).items]


@settings(max_examples=200, deadline=None)
@given(st.lists(_SCRIPT_PIECES, max_size=30).map("".join))
def test_any_script_keeps_its_tags_and_stays_parseable(source):
    try:
        before = _speech(source)
    except ScriptError:
        return  # the dictionary need not fix scripts that were broken to begin with
    assert Dictionary.build([]).apply(source).text == source
    after = _HOSTILE.apply(source)
    tags = [s.source for s in split_script(source) if isinstance(s, Tag)]
    assert [s.source for s in split_script(after.text) if isinstance(s, Tag)] == tags
    try:
        parsed = parse_script(after.text)
    except ScriptError as error:
        assert "nothing to say" in error.reason, (source, after.text, error)
        return
    assert {(getattr(i, "emotion", None), getattr(i, "voice", None)) for i in parsed.items} <= {*before, (None, None)}
