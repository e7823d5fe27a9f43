"""Request bodies of ``hub serve`` (pydantic): what each endpoint accepts.

Unknown fields are ignored on the OpenAI-compatible body (clients send extras such as ``user`` or
``dimensions``) and refused on hub's own bodies. Items are checked one by one by the application,
so an error names the item's index.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ClassifyRequest", "EmbeddingsRequest", "FeaturesRequest"]

Encoding = Literal["float", "base64"]


class EmbeddingsRequest(BaseModel):
    """``POST /v1/embeddings``, OpenAI's shape, plus ``truncate``."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="A served model's id (GET /v1/models).")
    input: str | list[Any] = Field(description="A string or a list of strings: texts, or images as "
                                   "'data:image/<type>;base64,' URIs.")
    encoding_format: Encoding = Field("float", description="'float' lists, or 'base64' of "
                                      "little-endian float32.")
    user: str | None = Field(None, description="Ignored.")
    truncate: bool = Field(True, description="Texts over the model's token limit are truncated "
                           "(and reported); false answers 422 naming the first such item.")


class FeaturesRequest(BaseModel):
    """``POST /v1/features``: hub's native endpoint (stages, pooling, normalisation)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    input: str | list[Any]
    modality: Literal["image", "text"] | None = Field(None, description="Default: from each item "
                                                      "(a data URI is an image).")
    stages: list[int | str] | Literal["all"] = Field(default_factory=list, description="Stages to "
                                                     "return (names or indices), 'all', or [] for "
                                                     "the embedding only.")
    pool: str | None = Field(None, description="avg/max/cls/mean/none; default: the manifest's.")
    normalize: bool | None = Field(None, description="Default: the manifest's.")
    max_length: int | None = Field(None, description="Text: fewer tokens than the model's limit.")
    truncate: bool = True
    encoding_format: Encoding = "float"


class ClassifyRequest(BaseModel):
    """``POST /v1/classify``: zero-shot scores of images among labels (image-text models)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    input: str | list[Any] = Field(description="Images as 'data:image/<type>;base64,' URIs.")
    labels: list[str] = Field(min_length=1)
    templates: list[str] | None = Field(None, description="Prompt templates with '{}'; default: "
                                        "hub.twotower.DEFAULT_TEMPLATES.")
