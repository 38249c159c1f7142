"""Make the embedded demo set: 24 short portrait clips and `manifest.csv` (needs ffmpeg and espeak-ng).

Every label follows from what a backbone can see, hear or read, so heads trained on real
features learn it:
- action (multi-class): the moving pattern (ffmpeg sources mandelbrot, life, cellauto, testsrc2);
- risky (binary): red-tinted picture and a caption (and speech) about drinking or smoking;
- tags (multi-label): striped (white bars), music (a tone), talking (espeak-ng speech), bright;
- views (number): brightness, stripes and music add views;
- intensity_joy / intensity_energy / intensity_surprise (numbers): brightness, tone pitch, stripes.
Some clips have no audio, some speak their caption, one carries phone rotation metadata.

Run from the project root: `python data/demo/make_demo.py` (rewrites data/demo/).
"""

from __future__ import annotations

import csv
import random
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WIDTH, HEIGHT, FPS = 144, 256, 24
ACTIONS = {  # class name -> ffmpeg source showing that motion
    "zooming": "mandelbrot=size={w}x{h}:rate={fps}",
    "swarming": "life=size={w}x{h}:rate={fps}:mold=10:ratio=0.3:seed={seed}",
    "scrolling": "cellauto=size={w}x{h}:rate={fps}:rule=110:seed={seed}",
    "sweeping": "testsrc2=size={w}x{h}:rate={fps}",
}
TINTS = {  # lutrgb channel formulas; k is the brightness factor
    "red": ("val*{k}*0.5+110*{k}", "val*{k}*0.3", "val*{k}*0.3"),
    "green": ("val*{k}*0.3", "val*{k}*0.5+100*{k}", "val*{k}*0.3"),
    "blue": ("val*{k}*0.3", "val*{k}*0.3", "val*{k}*0.5+110*{k}"),
}
RISKY_CAPTIONS = [
    "cold beer with the crew tonight",
    "smoking on the balcony again",
    "shots at the party 🍺",
    "vaping before class",
    "drunk karaoke night",
    "whisky and cigars on friday",
]
SAFE_CAPTIONS = [
    "morning yoga by the sea",
    "fresh green salad for lunch",
    "long easy run by the river",
    "drinking water all day",
    "stretching after the gym 💪",
    "cooking veggie soup at the café",
]
BRIGHTNESS = [0.55, 0.8, 1.0]
TONES = [440, 880]


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def speech_wav(text: str, out: Path) -> float:
    run(["espeak-ng", "-s", "150", "-w", str(out), text.encode("ascii", "ignore").decode()])
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(probe.stdout)


def make_clip(spec: dict, out: Path, tmp: Path) -> None:
    k = BRIGHTNESS[spec["bright"]]
    r, g, b = (f.format(k=k) for f in TINTS[spec["tint"]])
    rotated = spec["rotated"]
    w, h = (HEIGHT, WIDTH) if rotated else (WIDTH, HEIGHT)
    src = ACTIONS[spec["action"]].format(w=w, h=h, fps=FPS, seed=spec["seed"])
    vf = f"format=rgb24,lutrgb=r='{r}':g='{g}':b='{b}'"
    if spec["striped"]:
        vf += ",drawgrid=width=24:height=ih+1:thickness=8:color=white@1"
    cmd = ["ffmpeg", "-y", "-f", "lavfi", "-i", src]
    audio = []
    if spec["tone"]:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency={spec['tone']}:sample_rate=44100"]
        audio.append(f"[{len(audio) + 1}:a]volume=0.3[a{len(audio)}]")
    if spec["speech"]:
        cmd += ["-i", str(spec["speech"])]
        audio.append(f"[{len(audio) + 1}:a]aresample=44100[a{len(audio)}]")
    graph = [f"[0:v]{vf},format=yuv420p[v]"] + audio
    if len(audio) == 2:
        graph.append("[a0][a1]amix=inputs=2:duration=first:normalize=0[a]")
    elif audio:
        graph.append("[a0]anull[a]")
    cmd += ["-filter_complex", ";".join(graph), "-map", "[v]"]
    cmd += ["-map", "[a]", "-c:a", "aac", "-b:a", "48k", "-ac", "1"] if audio else ["-an"]
    cmd += [
        "-t",
        f"{spec['seconds']:.2f}",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "32",
        "-g",
        str(FPS),
        "-threads",
        "1",
        "-movflags",
        "+faststart",
    ]
    if not rotated:
        run([*cmd, str(out)])
        return
    # Phones store portrait video as landscape plus a display rotation; ffmpeg writes that on a remux.
    landscape = tmp / "landscape.mp4"
    run([*cmd, str(landscape)])
    run(["ffmpeg", "-y", "-i", str(landscape), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(out)])


def specs() -> list[dict]:
    rng = random.Random(7)
    rows = []
    for i in range(24):
        action = list(ACTIONS)[i % 4]
        tint = list(TINTS)[(i // 4) % 3]
        risky = tint == "red"
        caption = (RISKY_CAPTIONS if risky else SAFE_CAPTIONS)[(i // 2) % 6]
        audio_kind = ["none", "tone", "speech", "tone+speech"][(i * 3 + i // 4) % 4]
        rows.append(
            {
                "n": i,
                "action": action,
                "tint": tint,
                "risky": risky,
                "caption": caption,
                "bright": (i * 7 // 3) % 3,
                "striped": (i * 5 + i // 3) % 2 == 1,
                "tone": TONES[(i // 2) % 2] if "tone" in audio_kind else 0,
                "talk": "speech" in audio_kind,
                "seconds": rng.choice([2.0, 2.5, 3.0, 4.0]),
                "seed": 1000 + i,
                "rotated": i == 5,
            }
        )
    return rows


def labels(spec: dict) -> dict[str, str]:
    tags = [
        t
        for t, on in [
            ("striped", spec["striped"]),
            ("music", spec["tone"]),
            ("talking", spec["talk"]),
            ("bright", spec["bright"] == 2),
        ]
        if on
    ]

    def noisy(x: float) -> str:  # small deterministic noise so targets are not exact steps, kept in [0, 1]
        return f"{min(1.0, max(0.0, x + ((spec['n'] * 37) % 11 - 5) / 100)):.2f}"

    return {
        "risky": "yes" if spec["risky"] else "no",
        "tags": ",".join(tags),
        "action": spec["action"],
        "views": str(
            1000 + 2000 * spec["bright"] + 1500 * spec["striped"] + (800 if spec["tone"] else 0) + (spec["n"] * 53) % 97
        ),
        "intensity_joy": noisy(spec["bright"] / 2),
        "intensity_energy": noisy(spec["tone"] / 880),
        "intensity_surprise": noisy(0.9 if spec["striped"] else 0.1),
    }


def main() -> None:
    clips = HERE / "clips"
    clips.mkdir(exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for spec in specs():
            name = f"clip{spec['n']:02d}_{spec['action']}.mp4"
            if spec["talk"]:
                spec["speech"] = tmp / "speech.wav"
                spec["seconds"] = max(spec["seconds"], speech_wav(spec["caption"], spec["speech"]) + 0.3)
            else:
                spec["speech"] = None
            make_clip(spec, clips / name, tmp)
            rows.append({"video": f"clips/{name}", "text": spec["caption"], **labels(spec)})
    with open(HERE / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    total = sum(f.stat().st_size for f in clips.iterdir())
    print(f"{len(rows)} clips, {total / 1e6:.2f} MB in {clips}")


if __name__ == "__main__":
    main()
