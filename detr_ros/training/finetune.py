"""Start training from another model's weights when the class sets differ.

Class-specific tensors have one row per class, sometimes followed by extra rows (DETR's
"no object" row, RT-DETR's denoising padding row). Their rows are re-mapped by class
NAME — dataset category ids are not comparable between datasets — so a class both models
know keeps what it learned, a new class keeps the new model's fresh initialisation, and
the extra rows are carried over. Every other tensor must fit exactly.
"""

import re

import torch

from detr_ros.errors import ModelFileError

# RT-DETR: decoder.enc_score_head, decoder.dec_score_head.<i>, decoder.denoising_class_embed;
# DETR: class_embed.
CLASS_TENSOR = re.compile(r"(^|\.)(enc_score_head|dec_score_head\.\d+|denoising_class_embed|class_embed)\.(weight|bias)$")


def remap_class_rows(source_state, target_state, source_names, target_names, source_path):
    """Weights for the target model: class rows taken from ``source_state`` where the class name is known.

    source_state: the file's weights; target_state: the new model's freshly initialised weights.
    Returns (state_dict, kept class names, new class names).
    """
    source_rows = {name: i for i, name in enumerate(source_names)}
    merged, misfits = {}, []
    for key, fresh in target_state.items():
        old = source_state.get(key)
        if old is None and key.endswith("num_batches_tracked"):
            merged[key] = fresh  # a counter, not a weight
        elif old is None:
            misfits.append(f"{key} (not in the file)")
        elif CLASS_TENSOR.search(key) and old.shape[0] - len(source_names) == fresh.shape[0] - len(target_names):
            rows = [old[source_rows[name]] if name in source_rows else fresh[i] for i, name in enumerate(target_names)]
            merged[key] = torch.cat([torch.stack(rows), old[len(source_names):]])
        elif old.shape == fresh.shape:
            merged[key] = old
        else:
            misfits.append(f"{key} (file {tuple(old.shape)}, model {tuple(fresh.shape)})")
    if misfits:
        raise ModelFileError(f"{source_path}: weights do not fit the model apart from its classes: "
                             + ", ".join(misfits[:10]) + (f", ... ({len(misfits)} in all)" if len(misfits) > 10 else ""))
    kept = [name for name in target_names if name in source_rows]
    new = [name for name in target_names if name not in source_rows]
    return merged, kept, new
