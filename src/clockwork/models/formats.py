"""The forms a served model can take, and their file names."""

from __future__ import annotations

import enum

from clockwork.core.errors import InvalidInputError


class ModelFormat(enum.Enum):
    """``builtin``: one of the built-in architectures with safetensors weights; ``pt2``: a
    ``torch.export`` program (``torch.export.save``); ``onnx``: an ONNX file run by ONNX
    Runtime."""

    BUILTIN = "builtin"
    TORCH_EXPORT = "pt2"
    ONNX = "onnx"

    @staticmethod
    def parse(value: object) -> ModelFormat:
        for fmt in ModelFormat:
            if fmt.value == value:
                return fmt
        raise InvalidInputError(
            f"format must be one of {', '.join(repr(f.value) for f in ModelFormat)}, got {value!r}"
        )

    @property
    def suffix(self) -> str:
        """The model file's suffix (``.pt2``, ``.onnx``; ``.safetensors`` for weights)."""
        return {"builtin": ".safetensors", "pt2": ".pt2", "onnx": ".onnx"}[self.value]

    @property
    def default_filename(self) -> str:
        return "model" + self.suffix


# How to make a file this server takes, for the refusal of one it does not.
EXPORT_HINT = (
    "export the model instead: torch.export.save(torch.export.export(model, example_inputs, "
    "dynamic_shapes=...), 'model.pt2'), or torch.onnx.export(model, example_inputs, "
    "'model.onnx', dynamic_axes=...); then `clockwork models import REPO FILE --name N`"
)


def format_of_file(filename: str) -> ModelFormat:
    """The format a model file's name says (``.pt2``, ``.onnx``); anything else is refused, a
    pickled or TorchScript file with how to export it instead."""
    lower = filename.lower()
    for fmt in (ModelFormat.TORCH_EXPORT, ModelFormat.ONNX):
        if lower.endswith(fmt.suffix):
            return fmt
    if lower.endswith((".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt", ".torchscript")):
        raise InvalidInputError(
            f"{filename}: TorchScript and pickled files are not served (loading a pickle can "
            f"run any code, and TorchScript is deprecated); {EXPORT_HINT}"
        )
    raise InvalidInputError(f"{filename}: not a model file this server takes (.pt2 or .onnx)")


def check_model_filename(fmt: ModelFormat, filename: str | None) -> str:
    """``filename`` (default: the format's) after checking it is a plain name with the
    format's suffix."""
    if filename is None:
        return fmt.default_filename
    if not filename or "/" in filename or "\\" in filename or filename in (".", ".."):
        raise InvalidInputError(
            f"model_filename must be a file name inside the version directory, got {filename!r}"
        )
    if format_of_file(filename) is not fmt:
        raise InvalidInputError(
            f"model_filename {filename!r} does not end in {fmt.suffix} (format {fmt.value})"
        )
    return filename
