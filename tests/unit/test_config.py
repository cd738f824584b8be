"""Config validation: every bad value is a one-line error naming the file and key, exit code 2, no run folder."""

from __future__ import annotations

import pytest
import yaml
from conftest import PROJECT, TINY, run_main, write_config

from pipeline.spec.config import load_config, parse_config
from pipeline.core.errors import PipelineError


def test_valid_file_round_trips_through_yaml(tmp_path):
    config = load_config(write_config(tmp_path))
    assert config.model.hidden_layers == (16,)
    assert config.optimizer.kwargs() == {"learning_rate": 0.01, "decay": 0.0}
    again = parse_config(yaml.safe_load(config.to_yaml()))
    assert again == config


def test_overrides_are_parsed_as_yaml_values(tmp_path):
    config = load_config(write_config(tmp_path), ["cv.folds=5", "data.name=digits", "model.hidden_layers=[8, 4]"])
    assert config.cv.folds == 5 and config.data.name == "digits" and config.model.hidden_layers == (8, 4)


@pytest.mark.parametrize("sections, message", [
    ({"modle": {}}, "modle: unknown key"),
    ({"model": {"hidden_layers": [16], "dropuot": 0.1}}, "model.dropuot: unknown key"),
    ({"training": {"epochs": "ten"}}, "training.epochs: Input should be a valid integer"),
    ({"model": {"init_mode": "glorot_unifrom"}}, "model.init_mode: unknown initializer 'glorot_unifrom'"),
    ({"model": {"activation": "rellu"}}, "model.activation: unknown activation 'rellu'"),
    ({"optimizer": {"name": "adagrad"}}, "optimizer.name: unknown optimizer 'adagrad'"),
    ({"optimizer": {"name": "sgd", "learning_rate": -0.1}}, "optimizer.learning_rate: Input should be greater than 0"),
    ({"optimizer": {"name": "sgd", "decay": -1}}, "optimizer.decay: Input should be greater than or equal to 0"),
    ({"optimizer": {"name": "sgd", "beta_1": 0.9}}, "argument 'beta_1' does not apply to sgd"),
    ({"model": {"dropout": 1.5}}, "model.dropout: Input should be less than 1"),
    ({"schedule": {"name": "step", "k": 0.1}}, "argument 'k' does not apply to step"),
    ({"optimizer": {"name": "sgd", "decay": 0.01}, "schedule": {"name": "exponential"}}, "keep one of them"),
    ({"data": {"name": "file"}}, "needs data.path"),
    ({"experiment": "../escape"}, "experiment: '../escape' must be letters"),
    ({"callbacks": {"early_stopping": {"enabled": True}}, "data": {"name": "digits", "validation_split": 0}},
     "validation metric but data.validation_split is 0"),
])
def test_bad_config_is_one_clear_line(tmp_path, sections, message):
    path = write_config(tmp_path, **sections)
    with pytest.raises(PipelineError) as caught:
        load_config(path)
    text = str(caught.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


@pytest.mark.parametrize("params, message", [
    ({}, "empty search space"),
    ({"model__init_mode": []}, "empty list of values"),
    ({"model__init_mod": ["zeros"]}, "search.params.model__init_mod: unknown parameter"),
    ({"model__init_mode": ["zeros", "nope"]}, "unknown initializer 'nope'"),
    ({"optimizer__learning_rate": [0.1, -1]}, "search.params.optimizer__learning_rate: Input should be greater than 0"),
    ({"optimizer__beta_1": [0.9]}, "'beta_1' does not apply to sgd"),
    ({"optimizer__learning_rate": {"distribution": "loguniform", "low": 0.1, "high": 0.01}}, "distributions need strategy random"),
])
def test_bad_search_space(tmp_path, params, message):
    path = write_config(tmp_path, optimizer={"name": "sgd", "learning_rate": 0.1},
                        search={"strategy": "grid", "params": params})
    with pytest.raises(PipelineError, match=message):
        load_config(path, search=True)


def test_halving_resource_cannot_be_searched(tmp_path):
    path = write_config(tmp_path, search={"strategy": "halving-grid", "params": {"epochs": [2, 4]}})
    with pytest.raises(PipelineError, match="'epochs' is the halving resource"):
        load_config(path, search=True)


def test_distribution_checks(tmp_path):
    good = {"distribution": "loguniform", "low": 1e-4, "high": 1e-1}
    path = write_config(tmp_path, search={"strategy": "random", "params": {"optimizer__learning_rate": good}})
    assert load_config(path, search=True).search.params["optimizer__learning_rate"] == good
    bad = write_config(tmp_path, "bad.yaml", search={"strategy": "random", "params": {
        "optimizer__learning_rate": {"distribution": "loguniform", "low": 0, "high": 1}}})
    with pytest.raises(PipelineError, match="loguniform needs low > 0"):
        load_config(bad, search=True)


def test_optimizer_arguments_must_fit_every_searched_optimizer(tmp_path):
    path = write_config(tmp_path, search={"strategy": "grid", "params": {
        "optimizer": ["sgd", "adam"], "optimizer__momentum": [0.9]}})
    with pytest.raises(PipelineError, match="'momentum' does not apply to adam"):
        load_config(path, search=True)
    # Sub-grids (a list of dicts) give each optimizer its own arguments.
    ok = write_config(tmp_path, "ok.yaml", search={"strategy": "grid", "params": [
        {"optimizer": ["sgd"], "optimizer__momentum": [0.0, 0.9]},
        {"optimizer": ["adam"], "optimizer__beta_1": [0.8, 0.9]}]})
    assert len(load_config(ok, search=True).search.grids()) == 2


@pytest.mark.parametrize("module", ["train", "search"])
def test_cli_exit_code_2_without_traceback_or_run_folder(tmp_path, capsys, module):
    main = __import__(f"pipeline.{module}", fromlist=["main"]).main
    path = write_config(tmp_path, model={"init_mode": "nope"}, search={"params": {"batch_size": [8]}})
    code = run_main(main, ["--config", path, "--output-dir", tmp_path / "outputs"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err and "model.init_mode" in err
    assert not (tmp_path / "outputs").exists()


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(PipelineError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(PipelineError, match="not valid YAML at line"):
        load_config(broken)
    with pytest.raises(PipelineError, match="expected key=value"):
        load_config(write_config(tmp_path), ["cv.folds"])


def test_defaults_match_tiny_sections():
    assert parse_config(TINY).cv.folds == 2


@pytest.mark.parametrize("address, allowed", [
    ("tcp://127.0.0.1:8786", True), ("127.0.0.1:8786", True), ("tcp://localhost:8786", True),
    ("tcp://[::1]:8786", True), ("tls://10.0.0.5:8786", True), ("tcp://10.0.0.5:8786", False),
    ("tcp://0.0.0.0:8786", False), ("tcp://scheduler.example:8786", False), ("10.0.0.5:8786", False),
])
def test_plain_tcp_to_a_network_scheduler_needs_insecure(tmp_path, address, allowed):
    path = write_config(tmp_path)
    overrides = [f"execution.scheduler={address}", "execution.backend=dask"]
    if allowed:
        assert load_config(path, overrides).execution.scheduler == address
    else:
        with pytest.raises(PipelineError, match="unencrypted and unauthenticated.*--insecure"):
            load_config(path, overrides)
        assert load_config(path, [*overrides, "execution.insecure=true"]).execution.insecure


@pytest.mark.parametrize("overrides, problem", [
    (["execution.tls_ca=ca.pem", "execution.tls_cert=c.pem"], "TLS files are for a tls:// scheduler"),  # local cluster
    (["execution.scheduler=tcp://127.0.0.1:8786", "execution.tls_ca=ca.pem", "execution.tls_cert=c.pem"],
     "TLS files are for a tls:// scheduler"),
    (["execution.scheduler=tls://10.0.0.5:8786", "execution.tls_ca=ca.pem"], "tls_ca and execution.tls_cert go together"),
    (["execution.scheduler=tls://10.0.0.5:8786", "execution.tls_cert=c.pem", "execution.tls_key=k.pem"],
     "tls_ca and execution.tls_cert go together"),
])
def test_tls_files_belong_to_a_tls_scheduler(tmp_path, overrides, problem):
    with pytest.raises(PipelineError, match=problem):
        load_config(write_config(tmp_path), ["execution.backend=dask", *overrides])


def test_tls_files_of_a_tls_scheduler(tmp_path):
    from pipeline.tuning.certificates import TlsFiles

    execution = load_config(write_config(tmp_path), ["execution.scheduler=tls://10.0.0.5:8786", "execution.tls_ca=ca.pem",
                                                     "execution.tls_cert=c.pem"]).execution
    assert TlsFiles.of(execution) == TlsFiles("ca.pem", "c.pem", None)
    assert TlsFiles.of(load_config(write_config(tmp_path)).execution) is None


def test_repeated_folds_need_shuffling(tmp_path):
    with pytest.raises(PipelineError, match="cv.repeats 2 draws the folds anew each time, which needs cv.shuffle: true"):
        load_config(write_config(tmp_path), ["cv.repeats=2", "cv.shuffle=false"])
    assert load_config(write_config(tmp_path), ["cv.repeats=2"]).cv.splits == 2 * 2  # TINY: 2 folds


@pytest.mark.parametrize("path", sorted((PROJECT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    """The experiments of configs/ validate as shipped (search configs with their space checked)."""
    search = "search" in yaml.safe_load(path.read_text())
    config = load_config(path, search=search)
    if config.search.strategy == "tpe":  # the YAML anchors expand: three sub-grids, each with the network's parameters
        assert [grid["optimizer"] for grid in config.search.grids()] == [["adam"], ["rmsprop"], ["sgd"]]
        assert all("model__hidden_layers" in grid for grid in config.search.grids())
