"""CLIP through the shared model tests (model_tester.py): the joint model and every tower class against
transformers' CLIP."""

import transformers
from model_tester import ModelTester
from test_clip import TINY_CLIP, TINY_TEXT, TINY_VISION, images, texts

import hubformers

TEXT_CLASSES = (hubformers.CLIPTextModel, hubformers.CLIPTextModelWithProjection)
VISION_CLASSES = (hubformers.CLIPVisionModel, hubformers.CLIPVisionModelWithProjection)
PATCHES = (TINY_VISION["image_size"] // TINY_VISION["patch_size"]) ** 2
# transformers' CLIPTextModelTester and CLIPVisionModelTester
MINIMAL_TEXT = dict(
    vocab_size=99,
    hidden_size=32,
    projection_dim=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=512,
)
MINIMAL_VISION = dict(
    image_size=30,
    patch_size=2,
    hidden_size=32,
    projection_dim=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
)


class TestCLIP(ModelTester):
    all_model_classes = (hubformers.CLIPModel, *TEXT_CLASSES, *VISION_CLASSES)
    reference_classes = {
        hubformers.CLIPModel: transformers.CLIPModel,
        hubformers.CLIPTextModel: transformers.CLIPTextModel,
        hubformers.CLIPTextModelWithProjection: transformers.CLIPTextModelWithProjection,
        hubformers.CLIPVisionModel: transformers.CLIPVisionModel,
        hubformers.CLIPVisionModelWithProjection: transformers.CLIPVisionModelWithProjection,
    }
    pairwise_outputs = ("logits_per_image", "logits_per_text")
    common_properties = ()
    minimal_config_kwargs = {
        hubformers.CLIPTextConfig: MINIMAL_TEXT,
        hubformers.CLIPVisionConfig: MINIMAL_VISION,
        hubformers.CLIPConfig: dict(text_config=MINIMAL_TEXT, vision_config=MINIMAL_VISION, projection_dim=32),
    }
    xfail = {}
    skip = {
        ("CLIPModel", "test_resize_token_embeddings"): "two towers, no get_input_embeddings, as transformers' "
        "CLIPModel: resize CLIPTextModel's",
    }
    output_flags_not_from_config = {
        hubformers.CLIPModel: "as transformers' CLIPModel, the towers read these flags from their own configs"
    }

    def config_kwargs(self, model_class):
        if model_class in TEXT_CLASSES:
            return dict(TINY_TEXT)
        if model_class in VISION_CLASSES:
            return dict(TINY_VISION)
        return dict(TINY_CLIP)

    def make_inputs(self, model_class, batch_size=None):
        batch_size = batch_size or self.batch_size
        inputs = {}
        if model_class not in VISION_CLASSES:
            inputs["input_ids"], inputs["attention_mask"] = texts(batch_size)
        if model_class not in TEXT_CLASSES:
            inputs["pixel_values"] = images(batch_size)
        return inputs

    def make_labels(self, model_class, inputs):
        return {"return_loss": True} if model_class is hubformers.CLIPModel else {}

    def attention_shapes(self, model_class, inputs):
        batch = self.batch_size
        text = [(batch, TINY_TEXT["num_attention_heads"], inputs.get("input_ids", texts()[0]).shape[1])] * 2
        vision = [(batch, TINY_VISION["num_attention_heads"], PATCHES + 1)] * 2
        shapes = {"text": [(*s, s[-1]) for s in text], "vision": [(*s, s[-1]) for s in vision]}
        towers = ["text"] * (model_class not in VISION_CLASSES) + ["vision"] * (model_class not in TEXT_CLASSES)
        return [shape for tower in towers for shape in shapes[tower]]

    def hidden_state_shapes(self, model_class, inputs):
        batch = self.batch_size
        text = [(batch, inputs["input_ids"].shape[1], TINY_TEXT["hidden_size"])] * 3 if "input_ids" in inputs else []
        vision = [(batch, PATCHES + 1, TINY_VISION["hidden_size"])] * 3
        if model_class in TEXT_CLASSES:
            return {"hidden_states": text}
        if model_class in VISION_CLASSES:
            return {"hidden_states": vision}
        return {"text_model_output.hidden_states": text, "vision_model_output.hidden_states": vision}
