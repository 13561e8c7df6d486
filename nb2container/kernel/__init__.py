"""Code that runs INSIDE the user's kernel (for the CLI and the magic alike).

Only the standard library here (cloudpickle is imported lazily where an object needs
it), so that it imports in any kernel that can import nb2container.
"""
