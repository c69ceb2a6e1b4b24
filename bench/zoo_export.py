"""Export torchvision models (random weights; no download) to ONNX in both export forms, for
`npm run zoo`: models written by other people, not for this tool. Run with /usr/bin/python3
(Debian's python3-torch, python3-torchvision). Usage: zoo_export.py OUT_DIR NAME... (opset from
the ZOO_OPSET environment variable, default 13)."""
import os
import sys

import torch
import torchvision


def main():
    out, names = sys.argv[1], sys.argv[2:]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    for name in names:
        model = getattr(torchvision.models, name)(weights=None).eval()
        # Default initialization leaves every BN at weight 1 / bias 0 / mean 0 / var 1, which the
        # exporter then deduplicates into shared tensors: give the BNs trained-looking statistics.
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 1.5)
                for p in m.parameters(recurse=False):
                    if p.dim() <= 1 and not isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                        p.add_(torch.rand_like(p) * 1e-3)  # no two parameter vectors identical
        x = torch.randn(1, 3, 224, 224)
        for form, mode in (("folded", torch.onnx.TrainingMode.EVAL), ("preserve", torch.onnx.TrainingMode.PRESERVE)):
            path = os.path.join(out, f"{name}_{form}.onnx")
            torch.onnx.export(model, x, path, opset_version=int(os.environ.get("ZOO_OPSET", "13")), training=mode,
                              do_constant_folding=form == "folded", input_names=["input"],
                              output_names=["output"], dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})
        print(f"exported {name}")


if __name__ == "__main__":
    main()
