"""Write an inspection's files: report.txt, report.json, exclusions.txt and one contact sheet per group.

    <folder>/report.txt           the printed report
    <folder>/report.json          every finding, every id
    <folder>/exclusions.txt       proposed exclusions, `id  # reason`; edit it, pass it as exclude_file
    <folder>/contact_sheets/      near_duplicates_NN.png, identical_masks_NN.png, outliers.png
"""

from __future__ import annotations

import json
from pathlib import Path

from segtune.data import SegmentationData
from segtune.data.exclusions import write_exclusions
from segtune.inspect.contact_sheet import draw_contact_sheet
from segtune.inspect.report import format_report


def dataset_name(data_argument: str) -> str:
    """A folder name for a dataset argument: 'synthetic', a folder's name, or an .npz file's stem."""
    path = Path(str(data_argument).rstrip("/"))
    return path.stem if path.suffix == ".npz" else (path.name or "dataset")


def write_outputs(report: dict, data: SegmentationData, folder) -> dict:
    """Write every file into `folder`; returns the report with their paths under report['files']."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"report": str(folder / "report.txt"), "json": str(folder / "report.json"),
             "exclusions": str(folder / "exclusions.txt"), "contact_sheets": _draw_sheets(report, data, folder)}
    report = {**report, "files": files}
    write_exclusion_list(report, files["exclusions"])
    Path(files["json"]).write_text(json.dumps(report, indent=1))
    Path(files["report"]).write_text(format_report(report))
    return report


def write_exclusion_list(report: dict, path) -> None:
    """The report's proposed exclusions as an editable file (`segtune init` writes one beside its config)."""
    header = (f"segtune inspect exclusion list for {report['dataset']}\n"
              "one image id per line, the reason after '#'; delete a line to keep that image,\n"
              "add an id to leave it out; use with: segtune search --exclude-file <this file>")
    write_exclusions(path, report["exclusions"], header)


def _draw_sheets(report: dict, data: SegmentationData, folder: Path) -> dict[str, list[str]]:
    sheets = folder / "contact_sheets"
    for stale in [*sheets.glob("near_duplicates_*.png"), *sheets.glob("identical_masks_*.png"), sheets / "outliers.png"]:
        stale.unlink(missing_ok=True)  # from an earlier run over the same folder
    split_of = {i: s for s, ids in data.splits.items() for i in ids}
    excluded = report["exclusions"]

    def caption(image_id: str) -> str:
        verdict = f"EXCLUDE: {excluded[image_id].split(' (')[0]}" if image_id in excluded else "keep"
        return f"{split_of.get(image_id, 'no split')}; {verdict}"
    drawn: dict[str, list[str]] = {"near_duplicates": [], "identical_masks": [], "outliers": []}
    for kind, groups in (("near_duplicates", report["near_duplicates"]["groups"]),
                         ("identical_masks", report["identical_masks"])):
        for k, group in enumerate(groups, 1):
            title = f"{kind.replace('_', ' ')} group {k}: {len(group['ids'])} images"
            path = draw_contact_sheet(data, group["ids"], title, sheets / f"{kind}_{k:02d}.png",
                                      {i: caption(i) for i in group["ids"]})
            drawn[kind].append(str(path))
    outliers = report["outliers"]["images"]
    if outliers:
        captions = {o["id"]: f"{caption(o['id'])}; " + ", ".join(f"{r['feature']} z {r['z']:+.1f}" for r in o["reasons"])
                    for o in outliers}
        drawn["outliers"].append(str(draw_contact_sheet(data, [o["id"] for o in outliers],
                                                        f"outliers: {len(outliers)} images", sheets / "outliers.png",
                                                        captions)))
    return drawn
