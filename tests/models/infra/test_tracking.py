import sys
import types

import pytest
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker

from models.infra import tracking
from models.infra.tracking import log_table, markdown_rows, resolve_report_to


def test_report_to_names(monkeypatch):
    assert resolve_report_to("none") == resolve_report_to(None) == resolve_report_to([]) == resolve_report_to("") == []
    assert resolve_report_to("tensorboard") == ["tensorboard"]
    assert resolve_report_to(["tensorboard", "tensorboard"]) == ["tensorboard"]
    with pytest.raises(ValueError, match=r"report_to='tensorbord': unknown tracker 'tensorbord' \(expected none, all, "
                                         r"tensorboard, wandb, trackio, mlflow"):
        resolve_report_to("tensorbord")
    with pytest.raises(ValueError, match="'none' cannot be combined"):
        resolve_report_to("none,tensorboard")
    monkeypatch.setattr(tracking, "_installed", lambda name: name in ("tensorboard", "mlflow"))
    assert resolve_report_to("all") == ["tensorboard", "mlflow"]
    assert resolve_report_to("tensorboard,mlflow") == ["tensorboard", "mlflow"]
    with pytest.raises(ValueError, match=r"tracker 'wandb' needs the 'wandb' package, which is not installed"):
        resolve_report_to(["tensorboard", "wandb"], field="--report_to")


def test_samples_table_reaches_tensorboard_as_text(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = Accelerator(cpu=True, log_with="tensorboard", project_dir=str(tmp_path))
    acc.init_trackers("run")
    log_table(acc, "samples/dialogues", ["dialogue", "transcript"], [["d0", "A: hi | there\nB: hello"]], step=3)
    acc.end_training()
    events = EventAccumulator(str(tmp_path / "run"), size_guidance={"tensors": 0}).Reload()
    (event,) = events.Tensors("samples/dialogues/text_summary")
    text = event.tensor_proto.string_val[0].decode()
    assert event.step == 3 and text == markdown_rows(["dialogue", "transcript"], [["d0", "A: hi | there\nB: hello"]])
    assert text.splitlines()[-1] == "| d0 | A: hi \\| there<br>B: hello |"


class _Recorder(GeneralTracker):
    requires_logging_directory = False

    def __init__(self, name):
        self.name, self.calls = name, []
        super().__init__()

    @property
    def tracker(self):
        return self

    def log(self, values, step=None, **kwargs):
        self.calls.append(("log", values, step))



class _TableRecorder(_Recorder):
    def log_table(self, table_name, columns=None, data=None, step=None, **kwargs):
        self.calls.append(("log_table", table_name, columns, data, step))


def test_each_tracker_gets_its_own_kind_of_table(monkeypatch):
    logged = []
    trackio = types.SimpleNamespace(Table=lambda columns, data: ("trackio.Table", columns, data))
    mlflow = types.SimpleNamespace(log_table=lambda data, artifact_file: logged.append((data, artifact_file)))
    monkeypatch.setitem(sys.modules, "trackio", trackio)
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    wandb, track, ml, other = _TableRecorder("wandb"), _Recorder("trackio"), _Recorder("mlflow"), _Recorder("aim")
    acc = types.SimpleNamespace(is_main_process=True, trackers=[wandb, track, ml, other])
    cols, rows = ["dialogue", "transcript"], [["d0", "A: hi"], ["d1", "A: yo"]]
    log_table(acc, "samples", cols, rows, step=7)
    assert wandb.calls == [("log_table", "samples", cols, rows, 7)]
    assert track.calls == [("log", {"samples": ("trackio.Table", cols, rows)}, 7)]
    assert logged == [({"dialogue": ["d0", "d1"], "transcript": ["A: hi", "A: yo"]}, "samples/step_0000007.json")]
    assert other.calls == [("log", {"samples": markdown_rows(cols, rows)}, 7)] and ml.calls == []
    acc.is_main_process = False
    log_table(acc, "samples", cols, rows, step=8)
    assert len(wandb.calls) == 1  # other processes log nothing
