"""The inspection report as text (printed and saved as report.txt), one line or table per finding."""

from __future__ import annotations

from segtune.class_weights import CLASS_WEIGHT_CAP
from segtune.inspect.fingerprint import format_fingerprint
from segtune.inspect.hashing import HASH_BITS

SHOWN = 8
"""Ids listed per line before '... N more' (report.json holds every id)."""


def format_report(report: dict) -> str:
    """The whole report as plain text."""
    sections = [_overview(report), _classes(report), _splits(report), _weights(report), _geometry(report),
                _duplicates(report), _leakage(report), _exclusions(report),
                format_fingerprint(report["fingerprint"])]
    return "\n\n".join(s for s in sections if s) + "\n"


def _ids(ids, shown: int = SHOWN) -> str:
    ids = list(ids)
    return ", ".join(ids[:shown]) + (f" ... (+{len(ids) - shown} more)" if len(ids) > shown else "")


def _overview(r: dict) -> str:
    ignore = f" (+ ignore index {r['ignore_index']})" if r["ignore_index"] is not None else ""
    sizes = "; ".join(f"{s['size'][0]} x {s['size'][1]} ({s['images']} images)" for s in r["sizes"][:SHOWN])
    channels = ", ".join(f"{c} channel(s): {n} images" for c, n in r["channels"].items())
    return "\n".join([f"segtune inspect: {r['dataset']}",
                      f"{r['images']} images, {len(r['classes'])} classes{ignore}; {channels}",
                      f"sizes (H x W): {sizes}"
                      + (f"; {len(r['sizes']) - SHOWN} more sizes" if len(r["sizes"]) > SHOWN else ""),
                      f"grey level per image, averaged: mean {r['grey_level']['mean']}, std {r['grey_level']['std']}"])


def _classes(r: dict) -> str:
    width = max(len(c) for c in r["classes"])
    lines = ["Classes: share of labelled pixels, and the images holding each class",
             f"  {'#':>2}  {'class':<{width}}  {'share':>8}  {'pixels':>12}  images"]
    rare = set(r["rare_classes"])
    for row in r["class_table"]:
        flag = "  RARE" if row["name"] in rare else ""
        lines.append(f"  {row['index']:>2}  {row['name']:<{width}}  {100 * row['share']:7.3f}%  {row['pixels']:>12}  "
                     f"{row['images']}/{r['images']}{flag}")
    total = sum(row["pixels"] for row in r["class_table"]) + r["unlabelled_pixels"]
    lines.append(f"  unlabelled (ignore) pixels: {100 * r['unlabelled_pixels'] / max(total, 1):.3f}% of all pixels")
    if r["class_table"]:
        rarest = min(r["class_table"], key=lambda row: (row["share"], row["index"]))
        lines.append(f"  rarest: {rarest['name']} ({100 * rarest['share']:.3f}% of labelled pixels, "
                     f"in {rarest['images']} images)")
    for row in r["class_table"]:
        if row["name"] in rare:
            lines.append(f"  RARE {row['name']} in {row['images']} image(s): {_ids(row['image_ids']) or 'none'}")
    return "\n".join(lines)


def _splits(r: dict) -> str:
    own = ", ".join(f"{s} {n}" for s, n in r["split_files"].items()) or "none"
    lines = [f"Per split: the splits segtune search would use with its defaults (dataset split files: {own}; "
             "missing splits carved with val_fraction 0.15, test_fraction 0.15, seed 0, near-duplicates kept together)"]
    if r["splits"]:
        names = list(r["splits"])
        width = max(len(c) for c in r["classes"])
        lines.append(f"  {'class':<{width}}  " + "  ".join(f"{s + ' share':>12} {'imgs':>5}" for s in names))
        for c, name in enumerate(r["classes"]):
            lines.append(f"  {name:<{width}}  " + "  ".join(
                f"{100 * r['splits'][s]['shares'][c]:11.3f}% {r['splits'][s]['images_per_class'][c]:>5}" for s in names))
        lines.append(f"  {'images':<{width}}  " + "  ".join(f"{r['splits'][s]['images']:>18}" for s in names))
    lines += [f"  note: {note}" for note in r["split_notes"]]
    return "\n".join(lines)


def _weights(r: dict) -> str:
    schemes = list(r["class_weights"])
    width = max(len(c) for c in r["classes"])
    lines = [f"Suggested class weights (class_weighting options, cap {CLASS_WEIGHT_CAP:g}; from all images here - "
             "a search derives them from its training split)",
             f"  {'class':<{width}}  " + "  ".join(f"{s:>21}" for s in schemes)]
    for c, name in enumerate(r["classes"]):
        lines.append(f"  {name:<{width}}  " + "  ".join(f"{r['class_weights'][s][c]:21.4f}" for s in schemes))
    for scheme, weights in r["class_weights"].items():
        present = [w for w in weights if w > 0]
        if len(present) > 1 and max(present) - min(present) < 1e-3:
            lines.append(f"  note: {scheme} gives every class the same weight here (each class has more pixels "
                         "than its beta can tell apart)")
    return "\n".join(lines)


def _geometry(r: dict) -> str:
    depth = r["depth"]
    lines = [f"Network depth {depth['depth']}: H and W must be multiples of {depth['multiple']}"]
    for fit in depth["sizes"]:
        (h, w), ph, pw = fit["size"], *fit["pad_to"]
        lines.append(f"  {h} x {w} ({fit['images']} images): fits" if fit["fits"] else
                     f"  {h} x {w} ({fit['images']} images): pad to {ph} x {pw} (+{fit['pad'][0]} rows, "
                     f"+{fit['pad'][1]} columns; what validation does) "
                     f"or crop to {fit['crop_to'][0]} x {fit['crop_to'][1]}")
    tiling = r["tiling"]
    lines.append(f"Tiling for crop {tiling['crop'][0]} x {tiling['crop'][1]}, as `segtune predict` cuts images "
                 f"(tile {tiling['tile'][0]} x {tiling['tile'][1]}, overlap {tiling['overlap']:.0%} of a tile)")
    for plan in tiling["plans"]:
        lines.append(f"  {plan['size'][0]} x {plan['size'][1]} ({plan['images']} images): {plan['tiles'][0]} x "
                     f"{plan['tiles'][1]} = {plan['tiles_per_image']} tiles per image, overlap {plan['overlap'][0]} x "
                     f"{plan['overlap'][1]} px, {plan['tiles_per_image'] * plan['images']} tiles in all")
    if not tiling["plans"]:
        lines.append("  no image is larger than the crop")
    else:
        lines.append("  segtune search trains on random crops of the full-resolution images (keep resize null) "
                     "and scores whole images; these are the tiles `segtune predict` cuts (ensemble's default --overlap)")
    return "\n".join(lines)


def _duplicates(r: dict) -> str:
    near, sheets = r["near_duplicates"], r.get("files", {}).get("contact_sheets", {})
    lines = [f"Near-duplicate images (DCT perceptual hash, distance <= {near['threshold']} of {HASH_BITS} bits, "
             f"correlation >= {near['min_correlation']} beyond the dataset's mean picture): "
             f"{len(near['groups'])} group(s), {sum(len(g['ids']) for g in near['groups'])} images"]
    for k, group in enumerate(near["groups"], 1):
        lines.append(f"  {k}. {_ids(group['ids'])} (largest distance {group['max_distance']})"
                     + (f"  -> {sheets['near_duplicates'][k - 1]}" if sheets else ""))
    if near["unconfirmed"]:
        lines.append(f"  {len(near['unconfirmed'])} hash match(es) not confirmed (alike backgrounds, different "
                     "content?), e.g. " + ", ".join(f"{a}-{b} (distance {d}, correlation {c:.2f})"
                                                    for a, b, d, c in near["unconfirmed"][:3]))
    lines.append(f"Identical masks: {len(r['identical_masks'])} group(s)")
    for k, group in enumerate(r["identical_masks"], 1):
        classes = ", ".join(r["classes"][c] for c in group["classes"]) or "no labelled pixel"
        lines.append(f"  {k}. {len(group['ids'])} images share one mask ({classes}): {_ids(group['ids'])}"
                     + (f"  -> {sheets['identical_masks'][k - 1]}" if sheets else ""))
    outliers = r["outliers"]
    lines.append(f"Outliers (robust z beyond {outliers['z_threshold']}; grey-level ones beyond "
                 f"{outliers['exclude_z']:g} or near-constant are proposed for exclusion): {len(outliers['images'])}"
                 + (f"  -> {sheets['outliers'][0]}" if sheets and sheets.get("outliers") else ""))
    for found in outliers["images"]:
        reasons = ", ".join(f"{x['feature']} {x['value']:.3g} (z {x['z']:+.1f})" for x in found["reasons"])
        lines.append(f"  {found['id']}: {reasons}")
    lines.append(f"Masks with no labelled pixel: {_ids(r['blank_masks']) or 'none'}")
    return "\n".join(lines)


def _leakage(r: dict) -> str:
    leak = r["leakage"]
    lines = ["Leakage between the dataset's own split files"]
    twice = leak["listed_twice"]
    lines.append("  ids in two split files: " + ("; ".join(f"{i} ({', '.join(s)})" for i, s in twice.items()) or "none")
                 + (" (segtune search keeps them in the later split only)" if twice else ""))
    for kind in ("near_duplicates", "identical_masks"):
        lines.append(f"  {kind.replace('_', '-')} across splits: {len(leak[kind]) or 'none'}")
        for found in leak[kind]:
            lines.append("    " + "; ".join(f"{i} ({', '.join(s)})" for i, s in found["splits"].items()))
    return "\n".join(lines)


def _exclusions(r: dict) -> str:
    excluded, where = r["exclusions"], r.get("files", {}).get("exclusions", "exclusions.txt")
    lines = [f"Proposed exclusions: {len(excluded)} image(s), listed with reasons in {where}"]
    for image_id, reason in list(excluded.items())[:2 * SHOWN]:
        lines.append(f"  {image_id}  # {reason}")
    if len(excluded) > 2 * SHOWN:
        lines.append(f"  ... (+{len(excluded) - 2 * SHOWN} more in the file)")
    lines.append(f"  edit the list (delete a line to keep an image), then: segtune search --data {r['dataset']} "
                 f"--exclude-file {where}")
    return "\n".join(lines)
