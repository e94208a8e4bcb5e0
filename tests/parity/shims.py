"""Import shims that let facenet 1.0.5's original TF1 code run unchanged under TensorFlow 2.

Nothing of facenet is copied here: `install()` only puts stand-ins into `sys.modules` and on
old library names, then puts the installed package's `src/` on `sys.path`, so
`import facenet`, `generative.train_vae`, `models.inception_resnet_v1` load the PyPI files.

- `tensorflow` -> `tensorflow.compat.v1` with v2 behaviour disabled (graph mode, sessions,
  queues, `tf.contrib` gone); `tensorflow.contrib.slim` -> `tf_slim`;
  `tensorflow.python.framework.ops.Tensor` restored (tf_slim 1.1.0 uses it, TF >= 2.16 dropped it).
- `scipy.misc.imsave` / `imresize` (removed in SciPy 1.2/1.3) -> Pillow, with scipy 1.0's
  `bytescale` semantics: a float array is min-max stretched over the whole array.
- `sklearn.model_selection.KFold` (imported by facenet.py, unused here) -> a stub.
- NumPy leftovers: `np.float` (removed in 1.24) -> `float`.
- Python 2: `map` returning a list, for the modules that need it (`py2_map`).
"""

import builtins
import os
import sys
import types

import numpy as np


def bytescale(data):
    """scipy 1.0 `misc.bytescale(data)` for a float array: (x - min) * 255 / (max - min),
    clipped to 0..255, + 0.5, truncated to uint8 (the arithmetic in the array's dtype)."""
    cmin, cmax = data.min(), data.max()
    cscale = cmax - cmin
    if cscale == 0:
        cscale = 1
    scale = float(255 - 0) / cscale
    bytedata = (data - cmin) * scale + 0
    return (bytedata.clip(0, 255) + 0.5).astype(np.uint8)


def imsave(name, arr):
    from PIL import Image

    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        arr = bytescale(arr)
    Image.fromarray(arr).save(name)


def imresize(arr, size, interp="bilinear"):
    from PIL import Image

    filters = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
    img = Image.fromarray(bytescale(arr) if np.asarray(arr).dtype != np.uint8 else arr)
    if isinstance(size, (int, float)) and not isinstance(size, bool):
        raise NotImplementedError("imresize by a scale factor is not needed by the harness")
    return np.array(img.resize((size[1], size[0]), filters[interp]))


def py2_map(f, *iterables):
    return list(builtins.map(f, *iterables))


def facenet_src():
    """The installed facenet package's `src/` directory (site-packages/facenet/src)."""
    import importlib.util

    spec = importlib.util.find_spec("facenet")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("facenet==1.0.5 is not installed in this venv (tests/parity/setup-venv.sh)")
    return os.path.join(list(spec.submodule_search_locations)[0], "src")


def install():
    """Installs every shim; returns the `tensorflow.compat.v1` module facenet will see."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    np.float = float  # noqa: facenet writes np.zeros((0,), np.float)

    import tensorflow as real_tf
    import tensorflow.compat.v1 as tf

    tf.disable_v2_behavior()
    import tensorflow.python.framework.ops as ops

    if not hasattr(ops, "Tensor"):
        ops.Tensor = real_tf.Tensor
    import tf_slim

    sys.modules["tensorflow"] = tf
    contrib = types.ModuleType("tensorflow.contrib")
    contrib.slim = tf_slim
    tf.contrib = contrib
    sys.modules["tensorflow.contrib"] = contrib
    sys.modules["tensorflow.contrib.slim"] = tf_slim

    import scipy.misc

    scipy.misc.imsave = imsave
    scipy.misc.imresize = imresize

    sklearn = types.ModuleType("sklearn")
    model_selection = types.ModuleType("sklearn.model_selection")

    class KFold:  # facenet.py imports it for LFW evaluation only
        def __init__(self, *a, **k):
            raise NotImplementedError("KFold is not needed by the parity harness")

    model_selection.KFold = KFold
    sklearn.model_selection = model_selection
    sys.modules.setdefault("sklearn", sklearn)
    sys.modules.setdefault("sklearn.model_selection", model_selection)

    src = facenet_src()
    if src not in sys.path:
        sys.path.insert(0, src)
    # `import facenet` must be src/facenet.py, not the installed package directory.
    sys.modules.pop("facenet", None)
    return tf
