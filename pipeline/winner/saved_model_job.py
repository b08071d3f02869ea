"""The SavedModel of models/best/<name>/ and the test of the saved file, in a process of
its own beside the final stage's last runs."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.data import datasets
from pipeline.winner.export import saved_copy_and_test

READY, GO = "ready", "go"


class SavedModelJob:
    """`saved_copy_and_test` in a process of its own, on the core the stage leaves idle.

    A stage's training runs use about one of a CPU's two cores; writing the SavedModel
    (10 s for MobileNetV2) and testing the saved file (8 s) took a quarter of
    `final@<name>`. The process starts TensorFlow and reads the test split at once,
    says `ready`, and then waits, idle, for `go()`: the stage calls it after the runs
    whose seconds the report quotes, so that none of them is measured beside it.
    """

    def __init__(self, out: Path, manifest: dict, seed: int, deterministic: bool):
        import subprocess
        import sys

        from pipeline.data import image_store

        command = [sys.executable, "-m", __name__, str(out), str(image_store.FOLDER),
                   str(seed), str(int(deterministic))]  # fmt: skip
        self.out = out
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.process.stdin.write(json.dumps(manifest) + "\n")
        self.process.stdin.flush()

    def wait_ready(self) -> None:
        """Until the process has started (or ended: `result` then says why)."""
        for line in self.process.stdout:
            if line.strip() == READY:
                return

    def write_and_test(self) -> None:
        """Go: write the SavedModel and test the saved file (`result` waits for it)."""
        self.process.stdin.write(GO + "\n")
        self.process.stdin.close()

    def result(self) -> dict:
        """The saved file's test scores; waits for the process."""
        from pipeline.errors import ThawError

        text = self.process.stdout.read()
        if self.process.wait() != 0 or not text.strip():
            raise ThawError(
                f"writing {self.out}/saved_model and testing the saved model failed "
                f"(exit status {self.process.returncode}; its error is above)"
            )
        return json.loads(text.strip().splitlines()[-1])

    def stop(self) -> None:
        """End the process if it still runs (a stage that failed, or never said go)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()


def main() -> None:
    """python -m pipeline.winner.saved_model_job OUT IMAGES_FOLDER SEED DETERMINISTIC

    stdin: the manifest as one line of JSON, then `go` (or end of input: nothing to do)."""
    import sys

    from pipeline import quiet_tf
    from pipeline.data import image_store
    from pipeline.train import devices

    out, folder, seed, deterministic = sys.argv[1:5]
    image_store.FOLDER = Path(folder)
    manifest = json.loads(sys.stdin.readline())
    quiet_tf.load()
    devices.configure(int(seed), deterministic == "1")
    import keras  # noqa: F401  (started now, not after go)

    test = datasets.load_target_splits(manifest, ("test",))["test"]
    print(READY, flush=True)
    if sys.stdin.readline().strip() != GO:
        return  # the stage ended without a model to export
    print(json.dumps(saved_copy_and_test(Path(out), test)), flush=True)


if __name__ == "__main__":
    main()
