"""Code that runs INSIDE the user's kernel (for the CLI and the magic alike).

Only the standard library here (cloudpickle is imported lazily where an object needs
it), so that it imports in any kernel that can import nb2container.
"""

# The attribute by which a recorded function's wrapper keeps the notebook's own function,
# and the name of the recorder in the kernel's namespace.
ORIGINAL_ATTR = "__nb2container_original__"
RECORDER_NAME = "__nb2container_recorder__"
