"""The streaming gate from Python: a camera (or video file), an enrolment folder, a door-opening callback.

    python examples/gate_stream.py --source 0 --enroll enrol/ --duration 60
    python examples/gate_stream.py --source file://clip.mp4 --enroll enrol/

Same as ``hsst-gate --config firmware_configs/laptop-cpu.yaml --source ... --enroll ...``, with your own code
reacting to events.
"""
import argparse
import json

from hsst.runtime import GatePipeline, load_config


def open_door(event) -> None:
    if event.kind == "accept":
        print(f"OPEN for {event.identity} (score {event.score:.3f}, track {event.track_id}, "
              f"{event.timings['face_to_decision']:.0f} ms after the face appeared)")
    elif event.kind == "unknown":
        print(f"unknown person on track {event.track_id} (best score {event.score})")
    else:
        print(f"camera: {event.message}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="firmware_configs/laptop-cpu.yaml")
    parser.add_argument("--source", default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--enroll", required=True)
    parser.add_argument("--duration", type=float, default=None)
    args = parser.parse_args()

    overrides = {"gallery.enroll_dir": args.enroll}
    if args.source:
        overrides["source.uri"] = args.source
    if args.model:
        overrides["embedder.model"] = args.model
    gate = GatePipeline(load_config(args.config, overrides))
    gate.enroll_dir(args.enroll)
    gate.events.subscribe(open_door)
    metrics = gate.run(duration=args.duration)       # until the source ends, the duration passes, or Ctrl-C
    gate.close()
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
