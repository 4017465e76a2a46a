"""The judge's consensus checked against the answers (analysis.checked_coverage): a
point only some answers' text supports is not consensus."""

from chat.engine.analysis import checked_coverage

QUESTION = "What is the capital of Australia, and since when does Parliament sit there?"
ANSWERS = [
    ("A", 0, "Canberra is the capital of Australia. Parliament moved there in 1,927."),
    ("B", 1, "The capital is Canberra; Parliament has sat there since 1927."),
    ("C", 2, "Canberra. It was chosen in 1908."),
]


def judged(*consensus: str) -> dict:
    return {"consensus": list(consensus), "partial_coverage": [], "unique_insights": []}


def test_a_point_some_answers_make_moves_to_partial_coverage():
    checked = checked_coverage(
        judged("The capital is Canberra", "Parliament has sat there since 1927"),
        ANSWERS,
        QUESTION,
    )
    assert checked["consensus"] == ["The capital is Canberra"]  # every answer names it
    assert checked["partial_coverage"] == [
        {"point": "Parliament has sat there since 1927", "labels": ["A", "B"]}
    ]


def test_a_point_one_answer_makes_is_its_insight_and_labels_are_no_points():
    checked = checked_coverage(judged("A", "The site was chosen in 1908", "C"), ANSWERS, QUESTION)
    assert checked["consensus"] == []
    assert checked["unique_insights"] == [{"label": "C", "insight": "The site was chosen in 1908"}]


def test_points_with_nothing_to_check_or_no_answer_quoting_them_stay():
    # No number or name beyond the question's words; a paraphrase no answer contains.
    point, paraphrase = "All answers are correct", "Parliament sits there since 1913"
    checked = checked_coverage(judged(point, paraphrase), ANSWERS, QUESTION)
    assert checked["consensus"] == [point, paraphrase]
    assert checked["partial_coverage"] == [] and checked["unique_insights"] == []


def test_one_answer_is_left_as_judged():
    one = judged("Parliament has sat there since 1927")
    assert checked_coverage(one, ANSWERS[:1], QUESTION) == one


def test_a_partly_covered_point_names_the_answers_that_make_it():
    # As the bundled 1.5B judged it: the right point, the wrong answers.
    analysis = judged() | {
        "partial_coverage": [{"point": "Parliament has sat there since 1927", "labels": ["A", "C"]}]
    }
    checked = checked_coverage(analysis, ANSWERS, QUESTION)
    assert checked["partial_coverage"] == [
        {"point": "Parliament has sat there since 1927", "labels": ["A", "B"]}
    ]
    # With nothing to check it by, the judge's labels stand.
    unchecked = judged() | {
        "partial_coverage": [{"point": "It is a fine city", "labels": ["A", "C"]}]
    }
    assert checked_coverage(unchecked, ANSWERS, QUESTION)["partial_coverage"] == [
        {"point": "It is a fine city", "labels": ["A", "C"]}
    ]
