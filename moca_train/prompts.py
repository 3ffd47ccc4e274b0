"""MoCa's input prompts, as raw strings (no chat template).

The wording matters: on ViDoRe-v2 other phrasings of the document prompt lose up to 10 nDCG points.
"""

IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
DOCUMENT = IMAGE + "\nRepresent the given document image."
IMAGE_QUESTION = IMAGE + "Represent the given image with the following question: {question}\n"
IMAGE_TARGET = IMAGE + "Represent the given image.\n"


def query(text: str) -> str:
    """A text query is embedded as the raw text."""
    return text


def image_question(question: str) -> str:
    return IMAGE_QUESTION.format(question=question)
