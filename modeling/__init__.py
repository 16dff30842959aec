"""bertkit modeling: configs, BERT / ALBERT / MobileBERT encoders, heads, HuggingFace import (see DESIGN.md)."""
from modeling.checkpoints import load_encoder
from modeling.config import ModelConfig
from modeling.encoders import AlbertEncoder, BertEncoder, MobileBertEncoder, build_encoder
from modeling.heads import (ClassificationHead, Classifier, FitDense, MaskedLMHead, PretrainingModel,
                            SentencePairHead, build_classifier, build_fit_dense, build_pretraining_model)
from modeling.hf_import import load_hf_directory


def count_params_from_specs(config):
    """Parameter count of the encoder for `config`, from the declared weight shapes (no weights allocated)."""
    return build_encoder(config, build=False).count_params_from_specs()


__all__ = [
    "ModelConfig", "build_encoder", "load_encoder", "load_hf_directory", "count_params_from_specs",
    "BertEncoder", "AlbertEncoder", "MobileBertEncoder", "MaskedLMHead", "SentencePairHead", "ClassificationHead",
    "FitDense", "PretrainingModel", "Classifier", "build_pretraining_model", "build_classifier", "build_fit_dense",
]
