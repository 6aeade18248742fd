"""The Optuna side: the pruner fed per epoch, caps as constraints, the front and the
choice, resumed studies refused on other caps, storages that cannot be opened."""
from types import SimpleNamespace

import pytest

optuna = pytest.importorskip("optuna")

from optuna.trial import TrialState, create_trial  # noqa: E402

from pakd.errors import PakdError  # noqa: E402
from pakd.tune import study as S  # noqa: E402
from pakd.tune.trial import EpochReport  # noqa: E402


def test_the_pruner_stops_a_trial_below_the_median_after_its_warmup():
    curves = S.curves_study(optuna.storages.InMemoryStorage(), "s", startup=1, warmup=1)
    good = S.Curves(curves, True)
    for step, v in enumerate((0.5, 0.6, 0.7)):
        good.report(v, step)
        assert not good.should_stop()          # no finished trial yet: nothing to compare
    good.end(0.7, "COMPLETE")
    bad = S.Curves(curves, True)
    bad.report(0.1, 0)
    assert not bad.should_stop()               # the warm-up epoch
    bad.report(0.2, 1)
    assert bad.should_stop()                   # best so far 0.2 < the finished trial's 0.6
    bad.end(None, "PRUNED")
    fine = S.Curves(curves, True)
    fine.report(0.9, 0)
    fine.report(0.9, 1)
    assert not fine.should_stop()
    off = S.Curves(curves, False)
    off.report(0.0, 0)
    off.report(0.0, 1)
    assert not off.should_stop()
    states = [t.state for t in curves.get_trials()]
    assert states[:2] == [TrialState.COMPLETE, TrialState.PRUNED]


def test_epochs_are_reported_only_at_the_final_size():
    seen = []
    cb = EpochReport(lambda v, s: seen.append((s, v)), lambda: len(seen) >= 2)
    trainer = SimpleNamespace(final=False, stop=False)
    cb.on_epoch_end(trainer, {"valid_ndcg@10": 0.1})       # still pruning: not reported
    trainer.final = True
    cb.on_epoch_end(trainer, {"valid_ndcg@10": 0.2})
    assert not trainer.stop
    cb.on_epoch_end(trainer, {"valid_ndcg@10": 0.3})
    assert seen == [(0, 0.2), (1, 0.3)] and trainer.stop and cb.stopped
    assert cb.curve == [0.2, 0.3]


def _t(number, values, **attrs):
    t = create_trial(values=list(values), user_attrs=attrs)
    t.number = number
    return t


def test_caps_are_constraints_and_the_choice_keeps_the_runs_rmse():
    caps = {"max_params": 100}
    over = _t(0, (0.9, 1.0, 150), params=150)
    assert S.constraints(over.user_attrs, caps) == {"max_params": 50.0}
    assert not S.feasible(over, caps)
    assert S.constraints({}, caps) == {"max_params": 1.0}               # never measured
    ref = _t(1, (0.30, 1.00, 90), params=90, reference=True)
    better = _t(2, (0.35, 0.99, 80), params=80)
    sharper = _t(3, (0.40, 1.05, 70), params=70)      # best NDCG, worse RMSE than the run's
    dominated = _t(4, (0.30, 1.01, 95), params=95)
    trials = [ref, better, sharper, dominated]
    assert [t.number for t in S.pareto(trials)] == [3, 2]
    chosen, rule = S.choose(trials, tolerance=0.0)
    assert chosen.number == 2 and "trial 1" in rule
    assert S.choose(trials, tolerance=0.06)[0].number == 3
    assert S.choose([better, sharper], 0.0)[0].number == 3    # no run's trial: best NDCG
    assert S.choose([], 0.0)[0] is None


def test_a_resumed_study_keeps_its_caps_and_inputs():
    storage = optuna.storages.InMemoryStorage()
    ident = {"seed": 0, "teacher": "ensemble", "teacher_files": "abc"}
    study = S.create(storage, "s", {"max_params": 5000}, ident, {"budget": 10})
    queued = study.get_trials(states=(TrialState.WAITING,))
    assert len(queued) == 1 and queued[0].user_attrs == {"reference": True}
    found = S.find(storage, "s")
    assert S.check_resumed(found, None, ident, "here") == {"max_params": 5000}
    assert S.check_resumed(found, {"max_params": 5000}, ident, "here") == {"max_params": 5000}
    with pytest.raises(PakdError, match="made with --max-params 5000, this command gives "
                                        "--max-bytes 9000"):
        S.check_resumed(found, {"max_bytes": 9000}, ident, "here")
    with pytest.raises(PakdError, match="teacher_files: 'abc' -> 'xyz'"):
        S.check_resumed(found, None, {**ident, "teacher_files": "xyz"}, "here")
    assert S.find(storage, "other") is None


def test_a_storage_that_cannot_be_opened_is_named(tmp_path):
    with pytest.raises(PakdError, match="cannot be opened"):
        S.open_storage(f"sqlite:///{tmp_path}/missing/dir/t.db")
    with pytest.raises(PakdError, match="cannot be opened"):
        S.open_storage("not a url")
    with pytest.raises(PakdError) as e:
        S.open_storage("postgresql://me:secret@127.0.0.1:1/db")
    assert "secret" not in str(e.value) and "***" in str(e.value)


def test_trials_are_shared_out_over_the_workers():
    assert S.shares(5, 2) == [3, 2] and S.shares(1, 2) == [1] and S.shares(None, 2) == [None] * 2


def test_a_stopped_or_unfit_trial_ends_pruned_with_its_record(monkeypatch):
    from pakd.tune import trial as T
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="m", directions=list(S.DIRECTIONS))
    curves = S.curves_study(storage, "m", 0, 0)
    setup = SimpleNamespace(space=SimpleNamespace(sample=lambda trial, b: {"budget": 1}),
                            budget=(1, 2), objective="params", caps={"max_params": 4})
    outcomes = iter([
        T.Infeasible("its smallest student keeps 9 parameters, over the cap", {"reason": "x"}),
        {"pruned": True, "epochs_run": 2, "params": 5},
        {"pruned": False, "valid": {"ndcg@10": 0.3, "rmse": 0.9}, "params": 5}])

    def fake_run(setup, params, report, should_stop):
        got = next(outcomes)
        if isinstance(got, Exception):
            raise got
        report(0.3, 0)
        return got
    monkeypatch.setattr(T, "run", fake_run)
    study.optimize(S.objective(setup, curves, True), n_trials=3)
    a, b, c = study.get_trials()
    assert a.state == b.state == TrialState.PRUNED and c.state == TrialState.COMPLETE
    assert a.user_attrs["reason"] == "x" and b.user_attrs["params"] == 5
    assert c.values == [0.3, 0.9, 5.0]
    assert [t.constraints for t in (a, b, c)] == [{"max_params": 1.0}, {"max_params": 1.0},
                                                  {"max_params": 1.0}]
    assert [t.state for t in curves.get_trials()] == [TrialState.PRUNED, TrialState.COMPLETE]


def test_resuming_fails_what_a_killed_command_left_running_and_requeues_the_first_trial():
    storage = optuna.storages.InMemoryStorage()
    study = S.create(storage, "s", {}, {}, {"budget": 10})
    first = study.ask()                     # the queued run's settings, then the kill
    assert first.user_attrs == {"reference": True}
    assert S.recover(storage, study, {"budget": 10}, local=False) == 0   # the heartbeat's job
    assert S.recover(storage, study, {"budget": 10}, local=True) == 1
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].user_attrs == {"reference": True}
    S.recover(storage, study, {"budget": 10}, local=True)           # queued once only
    assert len(study.get_trials()) == 2
