"""The ``afdserve demo`` page (Gradio) and command.

The page talks to a running TorchServe through its inference API only, with the inference key
from key_file.json: start the server first (``make serve``), then ``afdserve demo`` in the same
directory and open http://127.0.0.1:7860. Gradio is the optional ``demo`` extra: it is imported
when the page is built, not when afdserve is.
"""

from __future__ import annotations

import os
from pathlib import Path

from afdserve.demo.compare import (AFD, BASELINE, MAX_SIDE, RESTORER, SAMPLES_DIR, Comparer, jpeg_size_text,
                                   samples)
from afdserve.ops.client import DEFAULT_BASE_URL, DEFAULT_KEY_FILE, TorchServeClient

DEFAULT_PORT = 7860
DEFAULT_QUALITY = 10

INTRO = """\
# JPEG-robust classification: what AFD changes

The photo is compressed **here**, at the quality you choose, with the JPEG encoder afdserve
evaluates with (Pillow), and the file is sent to TorchServe. `{baseline}` is EfficientNet-Lite0 as
trained on clean ImageNet photos; `{afd}` is the same frozen network with the AFD module, which
reads the file's DCT coefficients and corrects the drift that compression causes in its early
features. The lower the quality, the more the two should differ. Times are each request's round
trip as measured by this page.
"""

# System fonts only: the default theme would fetch web fonts, and the page must render offline.
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue",
                "Arial", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
CSS = """
#problem { background: #fff4e5; border-left: 4px solid #d9480f; padding: 0.6em 1em; border-radius: 4px; }
#problem p { margin: 0; }
#details p { margin: 0.2em 0; }
"""


def _gradio():
    # Before the import: gradio reads it then, and the page must not call out to the internet.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError as err:
        raise SystemExit("afdserve demo needs gradio: `make venv` installs it beside Pillow 13 (a plain "
                         f"pip install -e '.[demo]' downgrades Pillow: gradio declares pillow<13) ({err})") from err
    return gradio


def build_page(comparer: Comparer, quality: int = DEFAULT_QUALITY):
    """The Gradio Blocks of the demo, with the first sample loaded and compared on page load."""
    gr = _gradio()
    photos = samples()
    baseline_name, afd_name = (str(t) for t in comparer.classifiers)

    def banner(text: str | None):
        return gr.Markdown(value=text or "", visible=bool(text))

    def details(comparison) -> str:
        width, height = comparison.size
        lines = [f"**Sent:** {width}×{height} px JPEG at quality {comparison.quality}, "
                 f"{jpeg_size_text(comparison.jpeg)}"
                 + (f" (shrunk from {comparison.original_size[0]}×{comparison.original_size[1]} px)."
                    if comparison.original_size != comparison.size else ".")]
        if comparison.server_quality is not None:
            lines.append(f"**The server read:** quality {comparison.server_quality}, estimated from the "
                         "file's quantization tables.")
        lines += [f"- {a.error}" for a in comparison.answers if a.error and not comparison.problem]
        return "\n\n".join(lines)

    def run(photo, chosen_quality, restore_wanted):
        restored_hidden = gr.Image(value=None, visible=bool(restore_wanted), label="Restored")
        if photo is None:
            yield (banner("Upload a photo or pick one of the samples."), None, restored_hidden,
                   gr.Label(value=None, label=baseline_name), gr.Label(value=None, label=afd_name), "")
            return
        comparison = comparer.compare(photo, chosen_quality)
        labels = [gr.Label(value=a.top5 or None, label=a.title) for a in comparison.answers]
        compressed = gr.Image(value=comparison.compressed,
                              label=f"Sent to the server: JPEG quality {comparison.quality}")
        restoring = restore_wanted and comparison.problem is None
        restored = restored_hidden
        if restoring:
            restored = gr.Image(value=None, visible=True, label=f"{comparer.restorer}: restoring (seconds on a CPU)…")
        yield banner(comparison.problem), compressed, restored, *labels, details(comparison)
        if not restoring:
            return
        result = comparer.restore(comparison.jpeg)
        if result.image is None:
            restored = gr.Image(value=None, visible=True, label=f"{comparer.restorer}: no output")
            yield banner(result.error), compressed, restored, *labels, details(comparison)
            return
        restored = gr.Image(value=result.image, visible=True,
                            label=f"Restored by {comparer.restorer} in {result.latency_s:.1f} s")
        yield banner(None), compressed, restored, *labels, details(comparison)

    with gr.Blocks(title="afdserve demo: AFD on JPEG-compressed photos") as page:
        gr.Markdown(INTRO.format(baseline=baseline_name, afd=afd_name))
        problem = gr.Markdown(visible=False, elem_id="problem")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                photo = gr.Image(value=str(photos[0]) if photos else None, type="pil", image_mode="RGB",
                                 sources=["upload", "clipboard"], label="Your photo (upload, paste or pick a sample)",
                                 height=260, elem_id="photo")
                if photos:
                    gr.Examples([[str(p)] for p in photos], inputs=[photo], label="Samples")
                chosen_quality = gr.Slider(1, 100, value=quality, step=1, label="JPEG quality",
                                           info=f"1 = worst; photos over {comparer.max_side} px are shrunk first",
                                           elem_id="quality")
                # Measured with the released restorer on this project's 2-core machines.
                restore_wanted = gr.Checkbox(
                    False, elem_id="restore",
                    label=f"Also show {comparer.restorer}'s output (slow: 5-15 s for a 640×427 photo on 2 CPU cores)")
                again = gr.Button("Run again", elem_id="run")
            with gr.Column(scale=3, min_width=400):
                with gr.Row(equal_height=True):
                    # PNG: the page must not add compression of its own to what it shows.
                    compressed = gr.Image(label="Sent to the server", format="png", interactive=False, height=320,
                                          buttons=["download", "fullscreen"], elem_id="compressed")
                    restored = gr.Image(label="Restored", format="png", interactive=False, visible=False,
                                        height=320, buttons=["download", "fullscreen"], elem_id="restored")
                info = gr.Markdown(elem_id="details")
                with gr.Row(equal_height=True):
                    baseline = gr.Label(num_top_classes=5, label=baseline_name, elem_id="baseline")
                    afd = gr.Label(num_top_classes=5, label=afd_name, elem_id="afd")

        inputs = [photo, chosen_quality, restore_wanted]
        outputs = [problem, compressed, restored, baseline, afd, info]
        # One request at a time across all triggers: the latencies shown are each model's alone.
        common = dict(fn=run, inputs=inputs, outputs=outputs, concurrency_id="models", concurrency_limit=1,
                      show_progress="minimal")
        page.load(**common)
        photo.change(**common, trigger_mode="always_last")
        chosen_quality.release(**common, trigger_mode="always_last")
        restore_wanted.change(**common)
        again.click(**common)
    return page


def launch(page, host: str, port: int) -> None:
    """Serve the page until Ctrl-C: no share link, no MCP server, no server-side rendering (it
    needs node), no footer links; the theme with system fonts (launch() takes it in gradio 6)."""
    gr = _gradio()
    page.queue(default_concurrency_limit=1)
    page.launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=True,
                quiet=True, ssr_mode=False, mcp_server=False, footer_links=[],
                allowed_paths=[str(SAMPLES_DIR)], css=CSS,
                theme=gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS))


# ---------------------------------------------------------------------------------------------
# The command


def inference_url(config: Path) -> tuple[str, str | None]:
    """The inference URL `afdserve serve` uses with this config (its inference_address), and a
    note when the config could not be read and the default is used instead."""
    try:
        from afdserve.ops.server import LocalTorchServe, TorchServeError
    except ImportError as err:  # psutil, with the serve extra
        return DEFAULT_BASE_URL, f"({err}; using {DEFAULT_BASE_URL})"
    try:
        server = LocalTorchServe("model_store", {}, workdir=Path.cwd(), config_file=config, foreground=False)
        return server.inference_url, None
    except TorchServeError as err:
        return DEFAULT_BASE_URL, f"({err}; using {DEFAULT_BASE_URL})"


def _cmd_demo(args) -> int:
    if args.url:
        url, note = args.url, None
    else:
        url, note = inference_url(args.config)
    key_file = Path(args.key_file).resolve()  # the page names it in full when it is wrong
    client = TorchServeClient(url, key_file=key_file, timeout=args.timeout)
    comparer = Comparer(client, classifiers=(args.baseline, args.afd), restorer=args.restorer,
                        max_side=args.max_side)
    page = build_page(comparer, quality=args.quality)
    print(f"TorchServe inference API: {url}  key file: {key_file}"
          + (f"  {note}" if note else ""))
    print(f"The demo page: http://{args.host}:{args.port}  (Ctrl-C stops it)", flush=True)
    launch(page, args.host, args.port)
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="a web page that compresses a photo and shows both classifiers' top-5 (Gradio)",
        description="Start a Gradio page that compresses a photo at a chosen JPEG quality and shows "
        f"the top-5 of {BASELINE} and {AFD} (and optionally {RESTORER}'s output), asking the "
        "TorchServe that `afdserve serve` / `make serve` started, through its inference API.",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address the page binds to (default: %(default)s; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="default: %(default)s")
    p.add_argument("--url", default=None,
                   help="TorchServe's inference API (default: inference_address of --config)")
    p.add_argument("--config", type=Path, default=Path("config.properties"),
                   help="TorchServe config `afdserve serve` used (default: %(default)s)")
    p.add_argument("--key-file", default=DEFAULT_KEY_FILE,
                   help="TorchServe's key file, written where the server was started (default: %(default)s)")
    p.add_argument("--baseline", default=BASELINE, help="NAME or NAME/VERSION (default: %(default)s)")
    p.add_argument("--afd", default=AFD, help="NAME or NAME/VERSION (default: %(default)s)")
    p.add_argument("--restorer", default=RESTORER, help="NAME or NAME/VERSION (default: %(default)s)")
    p.add_argument("--quality", type=int, default=DEFAULT_QUALITY, help="initial JPEG quality (default: %(default)s)")
    p.add_argument("--max-side", type=int, default=MAX_SIDE,
                   help="photos are shrunk to this longer side before compression (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=120, help="seconds to wait for one answer (default: %(default)s)")
    p.set_defaults(func=_cmd_demo)
