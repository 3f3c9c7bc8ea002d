"""Navigation: heading arithmetic (with the wrap-around fix), geometry, action spaces, scoring
of whole sequences and of steps."""

from __future__ import annotations

import pytest

from unift import tasks
from unift.tasks.navigation import (
    HEADINGS,
    MAX_ACTION_CHARS,
    MAX_ACTIONS,
    RELATIONS,
    STEP,
    parse_actions,
    relative_turn,
    where,
    wrap,
)


@pytest.mark.parametrize(
    ("d", "turn"),
    [
        (90, "right"),
        (-90, "left"),
        (45, "slightly right"),
        (-45, "slightly left"),
        (0, "slightly left"),
        (135, "right"),
        (-135, "left"),
        (180, "right"),
        (-180, "right"),
        (46, "right"),
        (-46, "left"),
        # the published code compared raw differences; wrapped, these are small turns
        (45 - 315, "right"),
        (315 - 45, "left"),
        (0 - 315, "slightly right"),
        (315 - 0, "slightly left"),
        (270, "left"),
        (-270, "right"),
        (405, "slightly right"),
    ],
)
def test_relative_turn_wraps_the_heading_change(d, turn):
    assert relative_turn(d) == turn
    assert -180 < wrap(d) <= 180


def test_routes_follow_the_grid_and_landmarks_match_the_geometry():
    task = tasks.get("navigation")
    for p in task.problems(200):
        points, k = p["points"], 0
        for leg in p["legs"]:
            h = HEADINGS.index(leg["heading"])
            for m in range(1, leg["moves"] + 1):  # each move is one grid step along the heading
                assert [
                    points[k + m]["xy"][i] - points[k + m - 1]["xy"][i] for i in (0, 1)
                ] == list(STEP[h])
                assert points[k + m]["heading"] == leg["heading"]
            k += leg["moves"]
            assert [leg["landmark"], leg["relation"]] in points[k]["landmarks"]
            assert (
                sum(leg["landmark"] in str(q["landmarks"]) for q in points) == 1
            )  # seen only there
        assert k == len(points) - 1 and points[0]["intersection"] and not points[-1]["intersection"]
        turns = [p["start_heading"]] + [leg["heading"] for leg in p["legs"]]
        for before, leg in zip(turns, p["legs"], strict=False):
            d = 45 * (HEADINGS.index(leg["heading"]) - HEADINGS.index(before))
            assert leg["turn"] == relative_turn(d) and wrap(d) not in (0, 180)
    assert set(RELATIONS.values()) == {
        "front",
        "right front",
        "right",
        "right behind",
        "behind",
        "left behind",
        "left",
        "left front",
    }
    assert where("Joe's Pizza", "left front") == "Joe's Pizza is on your left front"


def test_action_spaces_differ_and_instructions_do_not():
    absolute, relative = (
        tasks.get("navigation", variant="absolute"),
        tasks.get("navigation", variant="relative"),
    )
    assert absolute.variants()["relative"]["distribution"] == "ood"
    for p in absolute.problems(50):
        assert absolute.instruction(p) == relative.instruction(p)
        turns_a = {a for _, a in absolute.expected(p) if a.startswith("turn")}
        turns_r = {a for _, a in relative.expected(p) if a.startswith("turn")}
        assert {a[15:-1] for a in turns_a} <= set(HEADINGS)
        assert {a[15:-1] for a in turns_r} <= {"left", "right", "slightly left", "slightly right"}
        assert (
            "northeast" in absolute.question(p)
            and "northeast" not in relative.question(p).split("Actions:")[1]
        )


PROBLEM = tasks.get("navigation").problems(1, seed=11)[0]


def test_sequence_score_is_per_step_accuracy():
    task = tasks.get("navigation")
    want = [a for _, a in task.expected(PROBLEM)]
    assert task.score(PROBLEM, "<answer>\n" + "\n".join(want) + "\n</answer>").reward == 1.0
    wrong = want[:2] + ["stop()"] + want[3:]
    score = task.score(PROBLEM, "<answer>" + " ".join(wrong) + "</answer>")
    assert score.reward == pytest.approx((len(want) - 1) / len(want)) and not score.correct
    score = task.score(PROBLEM, "<answer>" + "\n".join(want[:-1]) + "</answer>")  # forgot to stop
    assert score.reward == pytest.approx((len(want) - 1) / len(want)) and not score.correct
    assert task.score(PROBLEM, "\n".join(want)).reward == 0.0  # no answer block


@pytest.mark.parametrize(
    ("text", "actions"),
    [
        ("forward ( ) STOP()", ["forward()", "stop()"]),
        (
            "turn_direction('Slightly  Left ') turn_direction(\"north\")",
            ["turn_direction(slightly left)", "turn_direction(north)"],
        ),
        ("turn_direction( )", ["turn_direction()"]),  # an empty direction: a wrong action
        ("turn_direction(north-east) turn_direction(forward()) ", ["forward()"]),
        ("turn_direction(" + "a" * 21 + ")", []),
        ("turn_direction(" + " " * 70 + "north)", []),  # arguments up to 64 characters
    ],
)
def test_actions_are_parsed(text, actions):
    assert parse_actions(text) == actions


def test_only_the_first_actions_of_an_answer_are_read():
    assert len(parse_actions("stop()" * (MAX_ACTIONS + 5))) == MAX_ACTIONS
    late = " " * (MAX_ACTION_CHARS - 12) + "stop()"  # starts before the cap, ends after it
    assert parse_actions("forward()" + late) == ["forward()"]


def test_step_scoring_and_two_attempts():
    task = tasks.get("navigation", variant="relative")
    want = [a for _, a in task.expected(PROBLEM)]
    assert task.score_step(PROBLEM, 0, f"I will turn. {want[0]}").reward == 1.0
    bad = task.score_step(PROBLEM, 0, "forward()")
    assert bad.reward == -1.0 and "turn" in bad.feedback
    assert "not a valid direction" in task.score_step(PROBLEM, 0, "turn_direction(north)").feedback
    assert task.score_step(PROBLEM, len(want) - 1, "forward()").feedback.endswith(
        "you have reached the destination."
    )

    oracle = iter(want)
    assert task.rollout(PROBLEM, lambda messages: next(oracle)) == {
        "step_accuracy": 1.0,
        "success": True,
        "rewards": [1.0] * len(want),
    }

    # wrong first, right on the retry: every step still solved within the 2 attempts
    calls = []

    def stubborn(messages):
        calls.append(messages)
        done = messages[0]["content"].split("Your previous actions: ")[1].split(".\nCurrent")[0]
        t = 0 if done == "none yet" else len(done.split(", "))
        return "forward()" if len(messages) == 1 and want[t] != "forward()" else want[t]

    result = task.rollout(PROBLEM, stubborn)
    assert result["success"] and -1.0 in result["rewards"]
    assert any(
        m[-1]["content"].startswith("Incorrect action forward()") for m in calls if len(m) > 1
    )

    always_forward = task.rollout(PROBLEM, lambda messages: "forward()")
    assert not always_forward["success"]
    assert always_forward["step_accuracy"] == pytest.approx(want.count("forward()") / len(want))
