"""Training side (torch, transformers, peft, accelerate): runs only in the worker process."""

import os
import warnings

# Our own progress lines say where a run is; the hub's and transformers' bars ("Writing model shards",
# "Loading weights") only clutter the terminal and the worker's log. Set before transformers is imported.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# transformers 5 warns about its own internal use of a renamed property on every gradient-checkpointing check
warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
