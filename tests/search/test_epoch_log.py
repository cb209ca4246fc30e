"""search/budget.py: the epoch log counts each epoch once and records what it cost (seconds, scale, pixels)."""

from segtune import names
from search.budget import EpochLog, read_epoch_log


def test_each_epoch_is_logged_once_with_its_seconds_scale_and_pixels(tmp_path):
    log = EpochLog(budget=2)
    first = {"training_iteration": 1, names.EPOCH: 1, names.VAL_MIOU: 0.25, "time_this_iter_s": 1.5,
             names.TRAIN_SCALE: 0.25, names.TRAIN_PIXELS: 4096}
    log("t1", first)
    log("t1", first)  # Ray shows a trial's last result again as it completes
    assert not log.stop_all()
    log("t2", {"training_iteration": 1})  # a trial that reported nothing of its own (failed first)
    assert log.stop_all()
    log.write(tmp_path / "epochs.csv")
    assert read_epoch_log(tmp_path / "epochs.csv") == [
        {"trial_id": "t1", names.EPOCH: 1, names.VAL_MIOU: 0.25, "seconds": 1.5, names.TRAIN_SCALE: 0.25,
         names.TRAIN_PIXELS: 4096},
        {"trial_id": "t2", names.EPOCH: None, names.VAL_MIOU: None, "seconds": None, names.TRAIN_SCALE: None,
         names.TRAIN_PIXELS: None}]


def test_a_log_written_before_the_compute_columns_reads_them_as_none(tmp_path):
    (tmp_path / "epochs.csv").write_text("trial_id,epoch,val_miou\nt1,1,0.5\n")
    assert read_epoch_log(tmp_path / "epochs.csv") == [
        {"trial_id": "t1", names.EPOCH: 1, names.VAL_MIOU: 0.5, "seconds": None, names.TRAIN_SCALE: None,
         names.TRAIN_PIXELS: None}]
