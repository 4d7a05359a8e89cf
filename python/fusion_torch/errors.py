"""The one exception family of fusion_torch."""


class ExportError(ValueError):
    """A model fusion_torch cannot describe in the model format, or a model file it cannot read. The message names the
    module path or graph node and says what to do; nothing has been written when it is raised."""
