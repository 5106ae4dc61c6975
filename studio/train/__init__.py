"""Training side (torch, transformers, peft, accelerate): runs only in the worker process."""
