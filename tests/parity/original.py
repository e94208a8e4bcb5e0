"""facenet's original code, run under TF2 compat.v1 through `shims`, on the harness's inputs.

Each function builds the original's graph (from the installed facenet 1.0.5 files), runs it on
fixed arrays and returns numpy results; the scripts (train_vae.py, calculate_attribute_vectors.py,
modify_attribute.py) run their own `main(args)`. Where vaepipe deliberately differs (choices.md)
the original is switched to vaepipe's behaviour only where it is not reproducible, and every such
switch is appended to `SWITCHES` so the report prints it.
"""

import contextlib
import importlib
import os

import numpy as np

import shims

tf = shims.install()
import tf_slim as slim  # noqa: E402

SWITCHES = []


def switch(text):
    if text not in SWITCHES:
        SWITCHES.append(text)


def vae_module(arch):
    return importlib.import_module("generative.models." + arch)


def randomize(sess, variables, rng):
    """Gives BN betas and moving statistics non-trivial values (the original initialises them to
    0/0/1, which would make inference-mode BN an identity the comparison could not see)."""
    for v in variables:
        name = v.op.name
        shape = v.shape.as_list()
        if name.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("moving_mean") or name.endswith("beta") or name.endswith("biases"):
            value = rng.normal(0.0, 0.1, shape)
        else:
            continue
        v.load(value.astype(np.float32), sess)


# ---------------------------------------------------------------------------------------------
# Models


def init_vae_checkpoint(arch, latent, prefix, seed):
    """The original's VAE variables, initialised as train_vae.py does (its initializers), betas
    and moving statistics randomised, saved with TF's own Saver."""
    vae = vae_module(arch).Vae(latent)
    s = vae.get_image_size()
    with tf.Graph().as_default():
        tf.set_random_seed(seed)
        x = tf.placeholder(tf.float32, (None, s, s, 3))
        mean, _ = vae.encoder(x, True)
        vae.decoder(mean, True)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            randomize(sess, tf.global_variables(), np.random.RandomState(seed))
            tf.train.Saver(tf.global_variables()).save(sess, prefix, write_meta_graph=False)
    return prefix


def run_vae(arch, latent, prefix, images, latents):
    """Encoder and decoder in inference mode, then in training mode (moving averages updated in
    place, updates_collections=None), then the moved averages — vaepipe's parity-dump order."""
    vae = vae_module(arch).Vae(latent)
    s = vae.get_image_size()
    out = {}
    for mode, training in (("eval", False), ("train", True)):
        with tf.Graph().as_default():
            x = tf.placeholder(tf.float32, (None, s, s, 3))
            z = tf.placeholder(tf.float32, (None, latent))
            mean, log_var = vae.encoder(x, training)
            decoded = vae.decoder(z, training)
            with tf.Session() as sess:
                tf.train.Saver().restore(sess, prefix)
                m, lv, d = sess.run([mean, log_var, decoded], {x: images, z: latents})
                out[mode + "_mean"], out[mode + "_log_variance"], out[mode + "_decoded"] = m, lv, d
                if training:
                    for v in tf.global_variables():
                        if "moving_" in v.op.name:
                            out[v.op.name.replace("/", ".")] = sess.run(v)
    return out


def face_net_checkpoint(prefix, seed, image_size=160):
    """inception_resnet_v1.inference as train_vae.py builds it, Xavier init, BN randomised."""
    network = importlib.import_module("models.inception_resnet_v1")
    with tf.Graph().as_default():
        tf.set_random_seed(seed)
        x = tf.placeholder(tf.float32, (None, image_size, image_size, 3))
        network.inference(x, 1.0, phase_train=False, bottleneck_layer_size=128, weight_decay=0.0)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            randomize(sess, tf.global_variables(), np.random.RandomState(seed))
            tf.train.Saver(tf.global_variables()).save(sess, prefix, write_meta_graph=False)
    return prefix


def run_face_net(prefix, images, names):
    network = importlib.import_module("models.inception_resnet_v1")
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, (None,) + images.shape[1:])
        _, end_points = network.inference(
            x, 1.0, phase_train=False, bottleneck_layer_size=128, weight_decay=0.0
        )
        with tf.Session() as sess:
            tf.train.Saver().restore(sess, prefix)
            values = sess.run([end_points[n] for n in names], {x: images})
    return dict(zip(names, values))


def run_resize(images, size):
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, images.shape)
        y = tf.image.resize_images(x, (size, size))  # the call train_vae.py makes
        with tf.Session() as sess:
            return sess.run(y, {x: images})


# ---------------------------------------------------------------------------------------------
# Scripts


@contextlib.contextmanager
def patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


class FeedingSession(tf.Session):
    """tf.Session whose training runs are fed the harness's batch and noise for step k, and
    which records each step's fetches and, after the last step, every variable."""

    plan = None

    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
        plan = FeedingSession.plan
        is_step = isinstance(fetches, list) and fetches and getattr(fetches[0], "name", "") == "train"
        if not is_step:
            return super().run(fetches, feed_dict, options, run_metadata)
        k = len(plan["losses"])
        if k == 0:
            # The initial VAE weights, before any update: what vaepipe starts from.
            vae_vars = [v for v in tf.global_variables() if v.op.name.startswith(("encoder/", "decoder/"))
                        and "Adam" not in v.op.name]
            tf.train.Saver(vae_vars).save(self, plan["init_prefix"], write_meta_graph=False)
        feed = dict(feed_dict or {})
        feed[plan["images"]] = plan["batches"][k]
        feed[plan["epsilon"]] = plan["noise"][k]
        values = super().run(fetches, feed, options, run_metadata)
        # fetches: train_op, rec, kl, total, lr[, reconstructed]
        plan["losses"].append([values[3], values[1], values[2]])
        if k + 1 == len(plan["batches"]):
            names = [v for v in tf.global_variables() if not v.op.name.startswith("Inception")]
            plan["final"] = dict(zip([v.op.name for v in names], super().run(names)))
        return values


def train_vae(arch, loss_type, batches, noise, face_prefix, work, steps, lr, weight=None):
    """train_vae.py's main() for `steps` steps, with its input queue replaced by the harness's
    batches and its tf.random_normal by the harness's noise (both fed per step)."""
    train_vae = importlib.import_module("generative.train_vae")
    batch = batches.shape[1]
    latent = noise.shape[2]
    plan = {"batches": batches, "noise": noise, "losses": [], "init_prefix": os.path.join(work, "init")}
    FeedingSession.plan = plan
    args = train_vae.parse_arguments([
        "generative.models." + arch, os.path.join(work, "data"), "models.inception_resnet_v1",
        face_prefix or "",
        "--models_base_dir", os.path.join(work, "models"),
        "--reconstruction_loss_type", loss_type,
        "--max_nrof_steps", str(steps), "--save_every_n_steps", str(steps),
        "--batch_size", str(batch), "--latent_var_size", str(latent),
        "--initial_learning_rate", repr(lr),
    ] + (["--alfa", repr(weight), "--beta", repr(weight)] if weight is not None else []))

    def batch_join(tensors_list, batch_size, **kw):
        plan["images"] = tf.placeholder(tf.float32, (batch_size,) + batches.shape[2:], "parity_images")
        return plan["images"]

    def random_normal(shape, *a, **kw):
        plan["epsilon"] = tf.placeholder(tf.float32, (None, latent), "parity_epsilon")
        return plan["epsilon"]

    real_saver = tf.train.Saver

    def saver(var_list=None, **kw):
        if var_list is not None and len(var_list) == 0:
            kw["allow_empty"] = True
        return real_saver(var_list, **kw)

    switch("train_vae: the shuffled 4-thread input queue is replaced by fixed batches fed per step "
           "(vaepipe's order; the original's is not reproducible)")
    switch("train_vae: tf.random_normal's ε is fed per step, the same ε vaepipe gets")
    if loss_type == "PLAIN":
        switch("train_vae PLAIN: tf.train.Saver([]) gets allow_empty=True (the original crashes there)")
    with patched(tf.train, "batch_join", batch_join), patched(tf, "random_normal", random_normal), \
            patched(tf, "Session", FeedingSession), patched(tf.train, "Saver", saver):
        train_vae.main(args)
    model_dir = os.path.join(work, "models", os.listdir(os.path.join(work, "models"))[0])
    return np.array(plan["losses"], np.float64), plan["final"], plan["init_prefix"], model_dir


def sorted_image_paths(facedir):
    return sorted(os.path.join(facedir, f) for f in os.listdir(facedir))


def calculate_attribute_vectors(arch, checkpoint, data_dir, attr_file, out_h5, noise, n):
    """calculate_attribute_vectors.py's main(); its ε is the harness's noise row for each image,
    gathered by the index the queue carries, so each image gets the ε vaepipe gave it."""
    cav = importlib.import_module("generative.calculate_attribute_vectors")
    facenet = importlib.import_module("facenet")
    cav.map = shims.py2_map  # Python 2's list-returning map (len(attr) at :66)
    recorded = {}
    real_batch_join = tf.train.batch_join

    def batch_join(*a, **kw):
        out = real_batch_join(*a, **kw)
        recorded["indices"] = out[2]
        return out

    def random_normal(shape, *a, **kw):
        return tf.gather(tf.constant(noise), recorded["indices"])

    switch("calculate_attribute_vectors: images listed sorted by name (vaepipe's order) instead of os.listdir")
    switch("calculate_attribute_vectors: ε is vaepipe's noise per image instead of tf.random_normal")
    switch("calculate_attribute_vectors: Python 2's list-returning map")
    args = cav.parse_arguments([
        "generative.models." + arch, checkpoint, data_dir, attr_file, out_h5,
        "--batch_size", str(n), "--image_size", "160", "--latent_var_size", str(noise.shape[1]),
    ])
    with patched(tf.train, "batch_join", batch_join), patched(tf, "random_normal", random_normal), \
            patched(facenet, "get_image_paths", sorted_image_paths):
        cav.main(args)


def modify_attribute(arch, checkpoint, h5, out_png, latent):
    ma = importlib.import_module("generative.modify_attribute")
    args = ma.parse_arguments(["generative.models." + arch, checkpoint, h5, out_png,
                               "--latent_var_size", str(latent)])
    ma.main(args)
