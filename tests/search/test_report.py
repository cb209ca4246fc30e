"""The leaderboard: typed rows, written to leaderboard.csv in the columns users and scripts read."""

import math

from search.progress import format_leaderboard
from search.report import LeaderboardRow, write_leaderboard, summary_metrics

ROWS = [LeaderboardRow("a1", "completed", 3, 0.61234567, {"lr": 0.001, "encoder": "tu-resnet18"}, "/x/a1/ckpt", ""),
        LeaderboardRow("b2", "stopped_early", 1, 0.4, {"lr": 0.01}, None, ""),
        LeaderboardRow("c3", "failed", 0, math.nan, {"lr": 0.1}, None, "ValueError: encoder x not found")]


def test_leaderboard_csv_columns_and_values(tmp_path):
    write_leaderboard(tmp_path / "leaderboard.csv", ROWS)
    assert (tmp_path / "leaderboard.csv").read_text().splitlines() == [
        "rank,trial_id,outcome,epochs,val_miou,checkpoint,params,error",
        '1,a1,completed,3,0.61235,/x/a1/ckpt,"{""lr"": 0.001, ""encoder"": ""tu-resnet18""}",',
        '2,b2,stopped_early,1,0.40000,,"{""lr"": 0.01}",',
        '3,c3,failed,0,nan,,"{""lr"": 0.1}",ValueError: encoder x not found']


def test_summary_and_printed_table_read_the_rows():
    assert summary_metrics(ROWS) == {"best_val_miou": 0.61234567, "trials_completed": 1, "trials_stopped_early": 1,
                                     "trials_failed": 1}
    assert "   1  a1               completed           3   0.6123  lr=0.001, encoder=tu-resnet18" in format_leaderboard(ROWS)
