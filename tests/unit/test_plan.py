"""The batch plan: the one order of a micro-batch's steps, as the worker drives it."""

from streamrec.core.engine import DictProfileStore
from streamrec.core.plan import Await, Embed, batch_plan, run_plan
from tests.unit.test_engine import NOW, _search, _vector_engine


def _drive(plan, answer_for_embed):
    """A driver that records each effect, as the worker's loop meets them."""
    seen, answer = [], None
    try:
        while True:
            effect = plan.send(answer)
            answer = None
            seen.append(type(effect).__name__)
            if isinstance(effect, Embed):
                answer = ("handle", effect.texts, effect.version)
            elif isinstance(effect, Await):
                answer = answer_for_embed(*effect.handle[1:])
    except StopIteration:
        return seen


def test_a_batch_without_new_texts_is_one_publish_and_asks_no_scorer():
    engine, embed, calls = _vector_engine()
    engine.process_batch([_search("u", "sink", 1)], DictProfileStore(), NOW, embed=embed)
    plan = batch_plan(engine, [_search("v", "sink", 2)], DictProfileStore(), lambda: NOW)
    assert _drive(plan, embed) == ["Publish"]
    assert len(calls) == 1  # only the first batch asked


def test_new_texts_ask_once_and_the_waiting_users_come_after_the_answer():
    engine, embed, calls = _vector_engine()
    msgs = [_search("a", "sink", 1), _search("b", "shoes", 2), _search("a", "sink", 3)]
    effects = _drive(batch_plan(engine, msgs, DictProfileStore(), lambda: NOW), embed)
    assert effects == ["Embed", "Publish", "Await", "Publish"]
    assert calls == [(["sink", "shoes"], "enc@1")]


def test_without_a_scorer_the_batch_is_applied_at_once_and_flagged():
    engine, _embed, _calls = _vector_engine()
    plan = batch_plan(engine, [_search("a", "sink", 1)], DictProfileStore(), lambda: NOW,
                      can_embed=False)  # fmt: skip
    outs = run_plan(plan)
    assert len(outs) == 1 and outs[0].recommendations[0].flags == ("no_query_vector",)


def test_a_scorer_that_does_not_answer_costs_the_waiting_users_their_vector_only():
    engine, _embed, _calls = _vector_engine()
    msgs = [_search("a", "sink", 1), _search("b", "", 2)]
    outs = run_plan(batch_plan(engine, msgs, DictProfileStore(), lambda: NOW),
                    lambda texts, version: None)  # fmt: skip
    lists = [r for out in outs for r in out.recommendations]
    ref = engine.ingestor.pseudonymize.event_id
    assert [r.event_id for r in lists] == [ref("e2"), ref("e1")]  # b was not waiting
    assert lists[1].flags == ("no_query_vector",)
