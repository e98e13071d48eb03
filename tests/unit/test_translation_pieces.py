"""What a translator may see of a prompt, and which answers are refused (pure functions)."""

from __future__ import annotations

import pytest

from broker.prompt_parts import has_cjk, split_prose
from broker.translation import TranslationRefused, check_answer


def test_only_chinese_prose_leaves_and_the_rest_stays_in_place() -> None:
    prompt = "https://cdn.example/ref.png 一只猫::2 坐在月亮上 <@123> --ar 16:9 --no 红色 --v 7"
    prose = split_prose(prompt)
    assert prose.prose == ["一只猫", "坐在月亮上"]
    assert prose.with_prose(["a cat", "sitting on the moon"]) == (
        "https://cdn.example/ref.png a cat::2 sitting on the moon <@123> --ar 16:9 --no 红色 --v 7"
    )


def test_english_and_parameter_only_prompts_have_nothing_to_translate() -> None:
    assert split_prose("--ar 16:9 --v 7").prose == []
    assert split_prose("a red fox, 4k --ar 3:2").prose == []
    assert not has_cjk("a fox，。") and has_cjk("狐狸") and has_cjk("きつね")


def test_describe_results_keep_their_numbering_and_parameters() -> None:
    result = "1️⃣ a red fox in snow --ar 4:3\n\n2️⃣ a fox, watercolor --ar 4:3"
    prose = split_prose(result, only_cjk=False)
    assert prose.prose == ["a red fox in snow", "a fox, watercolor"]
    assert prose.with_prose(["雪中红狐", "水彩狐狸"]) == "1️⃣ 雪中红狐 --ar 4:3\n\n2️⃣ 水彩狐狸 --ar 4:3"


def test_a_plain_or_fenced_json_array_is_taken() -> None:
    assert check_answer('["a cat", "the moon"]', ["猫", "月亮"], "en") == ["a cat", "the moon"]
    assert check_answer('```json\n["a cat"]\n```', ["猫"], "en") == ["a cat"]


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ('Sure! ["a cat"]', "not a JSON array"),
        ('["a cat"] Hope this helps', "not a JSON array"),
        ('{"text": "a cat"}', "array of strings"),
        ('["a cat", "extra"]', "2 pieces for 1"),
        ('[""]', "empty piece"),
        ('["a cat --ar 2:3"]', "parameter"),
        ('["a cat::3"]', "weight"),
        ('["a cat https://evil.example/x.png"]', "link"),
        ('["一只 cat"]', "not English"),
    ],
)
def test_answers_that_add_text_or_touch_parameters_are_refused(answer: str, why: str) -> None:
    with pytest.raises(TranslationRefused, match=why):
        check_answer(answer, ["一只猫"], "en")
