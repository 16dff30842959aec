"""Optimizers for bertkit: BERT's warmup + linear decay schedule, AdamW / LAMB with the original BERT weight-decay
exclusions, layer-wise learning-rate decay, gradient accumulation and a global-norm helper.

Conventions
-----------
Weight decay exclusion
    A variable gets no weight decay when one of the regular expressions in `exclude_from_weight_decay` (default
    `DEFAULT_WEIGHT_DECAY_EXCLUSIONS`) is found (`re.search`) in its Keras 3 `variable.path` (e.g.
    `bert_encoder/layer_0/attention_layer_norm/gamma`) *or* its short `variable.name` (`gamma`). Keras 3's own
    `Optimizer.exclude_from_weight_decay(var_names=...)` only searches `variable.name`, which for a Keras 3 variable
    is the short name (`kernel`, `bias`, `gamma`, `beta`): a pattern such as "LayerNorm" never matches there. That is
    why bertkit's optimizers do the matching themselves, on the path. The defaults exclude every bias, every variable
    under a layer whose name contains LayerNorm / layer_norm / layernorm (any case), and any variable whose short name
    is `gamma` or `beta` (the Keras LayerNormalization / BatchNormalization weights, whatever the layer is called).

Layer-wise learning-rate decay (fine-tuning, ELECTRA style)
    Each variable gets a depth: 0 for the embeddings (a path containing "embedding" and no layer index), i + 1 for
    transformer layer i (0-based), found as a path component `layer_{i}` (regex `(^|/)layers?_(\\d+)(/|$)`, first
    match), and L + 1 for everything else (pooler, classifier heads, the MLM head). Its learning rate is multiplied by
    `layerwise_lr_decay ** (L + 1 - depth)`: heads train at the full rate, the last transformer layer at decay, the
    embeddings at decay ** (L + 1). The multiplier scales the learning rate inside the update (and the weight decay,
    which is proportional to it), not the gradient: Adam and LAMB are invariant to a gradient's scale, so scaling
    gradients would do nothing. NOTE for encoder authors: Keras 3 variable paths come from the *layer names* (the
    `name=` given to a layer), not from the Python attribute it is assigned to, so transformer layers must be created
    with `name=f"layer_{i}"` for this to work. bertkit's modeling encoders build their weights outside the layers'
    name scopes (paths like `bert_encoder/attention/qkv_kernel`), so for them pass `encoder=` to `create_optimizer`:
    the depths are then read from the encoder's structure (`encoder.embeddings` -> 0, `encoder.layer_{i}` -> i + 1,
    anything else -> L + 1; `encoder_variable_depths`). If no variable is recognised as a transformer-layer variable,
    building the optimizer raises instead of silently training the layers at the heads' rate.
    `layer_multipliers(variables, ...)` shows the assignment.

Gradient clipping
    `clipnorm` clips the global norm of all gradients (the original BERT `tf.clip_by_global_norm(grads, 1.0)`); it
    is passed to Keras as `global_clipnorm`. Like the original BERT on TPU, under tf.distribute the clip is applied
    to each replica's gradients before they are summed across replicas.
"""
import re

import keras
import tensorflow as tf

from bertkit_errors import UserError

DEFAULT_WEIGHT_DECAY_EXCLUSIONS = (
    "bias",
    "(?i)layer_?norm",
    "(^|/)gamma$",
    "(^|/)beta$",
)
_LAYER_INDEX_RE = re.compile(r"(?:^|/)layers?_(\d+)(?:/|$)")


# --------------------------------------------------------------------------------------------------------------------
# Learning-rate schedule


@keras.saving.register_keras_serializable(package="bertkit")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = init_lr * step / num_warmup_steps while step < num_warmup_steps, then
    init_lr * (1 - step / num_train_steps), reaching 0 at num_train_steps and staying there (the original BERT
    `polynomial_decay(power=1.0, end_learning_rate=0)` with the linear warmup override)."""

    def __init__(self, init_lr, num_train_steps, num_warmup_steps=0, name=None):
        if num_train_steps <= 0:
            raise ValueError(f"num_train_steps must be positive, got {num_train_steps}")
        if num_warmup_steps < 0:
            raise ValueError(f"num_warmup_steps must be >= 0, got {num_warmup_steps}")
        self.init_lr = float(init_lr)
        self.num_train_steps = int(num_train_steps)
        self.num_warmup_steps = int(num_warmup_steps)
        self.name = name

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        init_lr = tf.constant(self.init_lr, tf.float32)
        decayed = init_lr * (1.0 - tf.minimum(step, float(self.num_train_steps)) / float(self.num_train_steps))
        if self.num_warmup_steps == 0:
            return decayed
        warmup = init_lr * step / float(self.num_warmup_steps)
        return tf.where(step < float(self.num_warmup_steps), warmup, decayed)

    def get_config(self):
        return {
            "init_lr": self.init_lr,
            "num_train_steps": self.num_train_steps,
            "num_warmup_steps": self.num_warmup_steps,
            "name": self.name,
        }


# --------------------------------------------------------------------------------------------------------------------
# Variable classification helpers


def _var_path(variable):
    return getattr(variable, "path", None) or variable.name


def uses_weight_decay(variable, exclusions=DEFAULT_WEIGHT_DECAY_EXCLUSIONS):
    """True when `variable` is decayed under `exclusions` (regexes searched in its path and its short name)."""
    path = _var_path(variable)
    name = variable.name
    for pattern in exclusions:
        if re.search(pattern, path) or re.search(pattern, name):
            return False
    return True


def variable_depth(path, num_layers):
    """Depth used by layer-wise LR decay: 0 embeddings, i + 1 for `layer_{i}`, num_layers + 1 for anything else."""
    m = _LAYER_INDEX_RE.search(path)
    if m:
        index = int(m.group(1))
        if index >= num_layers:
            raise ValueError(
                f"variable {path!r} is in transformer layer {index}, but num_layers={num_layers}"
            )
        return index + 1
    if "embedding" in path.lower():
        return 0
    return num_layers + 1


def encoder_variable_depths(encoder):
    """{id(variable): depth} read from the encoder's structure instead of variable paths: `encoder.embeddings`
    -> 0, `encoder.layer_{i}` -> i + 1 (i < encoder.num_layers); other encoder variables (pooler) are not listed
    and so count as heads (L + 1). Use this when the variable paths do not carry the layer names (bertkit's
    modeling encoders build their weights outside the layers' name scopes, so their paths do not).
    Raises ValueError for encoders without per-layer weights (ALBERT shares its layers)."""
    depths = {}
    embeddings = getattr(encoder, "embeddings", None)
    if embeddings is not None:
        for v in embeddings.trainable_variables:
            depths[id(v)] = 0
    for i in range(encoder.num_layers):
        layer = getattr(encoder, f"layer_{i}", None)
        if layer is None:
            raise ValueError(
                f"layer-wise LR decay: the encoder has no attribute layer_{i} (layers shared across depths, as in "
                "ALBERT, cannot get per-layer learning rates)"
            )
        for v in layer.trainable_variables:
            depths[id(v)] = i + 1
    return depths


def variable_depths_for(variables, num_layers, variable_depths=None):
    """[depth per variable]: from `variable_depths` ({id(variable): depth}) when listed there, else the path rule."""
    out = []
    for v in variables:
        if variable_depths is not None and id(v) in variable_depths:
            out.append(variable_depths[id(v)])
        else:
            out.append(variable_depth(_var_path(v), num_layers))
    return out


def layer_multipliers(variables, num_layers, layerwise_lr_decay, variable_depths=None):
    """[learning-rate multiplier per variable] under the layer-wise decay convention in the module docstring;
    `variable_depths` ({id(variable): depth}, e.g. `encoder_variable_depths(encoder)`) overrides the path rule."""
    return [float(layerwise_lr_decay) ** (num_layers + 1 - d)
            for d in variable_depths_for(variables, num_layers, variable_depths)]


class _BertOptimizerMixin:
    """Path-based weight-decay exclusion and per-variable learning-rate multipliers, resolved when the optimizer is
    built (keyed by `self._var_key`, which also resolves the per-replica components seen under tf.distribute)."""

    def _init_bert(self, weight_decay_rate, exclude_from_weight_decay, layerwise_lr_decay, num_layers,
                   variable_depths=None):
        self.weight_decay_rate = float(weight_decay_rate or 0.0)
        self.exclude_patterns = tuple(
            DEFAULT_WEIGHT_DECAY_EXCLUSIONS if exclude_from_weight_decay is None else exclude_from_weight_decay
        )
        if layerwise_lr_decay is not None:
            if num_layers is None or int(num_layers) <= 0:
                raise ValueError("layerwise_lr_decay needs num_layers (the encoder's number of transformer layers)")
            if not 0.0 < float(layerwise_lr_decay) <= 1.0:
                raise ValueError(f"layerwise_lr_decay must be in (0, 1], got {layerwise_lr_decay}")
        self.layerwise_lr_decay = None if layerwise_lr_decay is None else float(layerwise_lr_decay)
        self.num_layers = None if num_layers is None else int(num_layers)
        self._variable_depths = None if variable_depths is None else {int(k): int(d) for k, d in
                                                                      dict(variable_depths).items()}
        self._bert_decay = {}
        self._bert_lr_mult = {}

    def _build_bert_maps(self, var_list):
        var_list = list(var_list)
        for v in var_list:
            self._bert_decay[self._var_key(v)] = (self.weight_decay_rate > 0
                                                  and uses_weight_decay(v, self.exclude_patterns))
        if self.layerwise_lr_decay is None:
            for v in var_list:
                self._bert_lr_mult[self._var_key(v)] = 1.0
            return
        depths = variable_depths_for(var_list, self.num_layers, self._variable_depths)
        if not any(1 <= d <= self.num_layers for d in depths):
            raise ValueError(
                "layer-wise LR decay: no variable was recognised as part of a transformer layer (no 'layer_{i}' "
                "in the variable paths); pass encoder=... to create_optimizer so the layers are found from the "
                "encoder's structure"
            )
        mults = [self.layerwise_lr_decay ** (self.num_layers + 1 - d) for d in depths]
        for v, m in zip(var_list, mults):
            self._bert_lr_mult[self._var_key(v)] = m

    def _bert_settings(self, variable):
        key = self._var_key(variable)
        return self._bert_decay[key], self._bert_lr_mult[key]

    def _bert_config(self):
        return {
            "weight_decay_rate": self.weight_decay_rate,
            "exclude_from_weight_decay": list(self.exclude_patterns),
            "layerwise_lr_decay": self.layerwise_lr_decay,
            "num_layers": self.num_layers,
        }


@keras.saving.register_keras_serializable(package="bertkit")
class AdamWeightDecay(_BertOptimizerMixin, keras.optimizers.Adam):
    """Adam with decoupled weight decay (w -= lr * rate * w, then the Adam step, as Keras AdamW), the BERT
    exclusions and optional layer-wise LR decay. Keras' own `weight_decay` stays None: decay happens in update_step."""

    def __init__(
        self,
        learning_rate=0.001,
        weight_decay_rate=0.01,
        exclude_from_weight_decay=None,
        layerwise_lr_decay=None,
        num_layers=None,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-6,
        variable_depths=None,
        name="adam_weight_decay",
        **kwargs,
    ):
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, name=name,
                         **kwargs)
        self._init_bert(weight_decay_rate, exclude_from_weight_decay, layerwise_lr_decay, num_layers,
                        variable_depths)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._build_bert_maps(var_list)

    def update_step(self, gradient, variable, learning_rate):
        decay, mult = self._bert_settings(variable)
        lr = ops_cast(learning_rate, variable.dtype)
        if mult != 1.0:
            lr = lr * mult
        if decay:
            self.assign_sub(variable, variable * (lr * self.weight_decay_rate))
        super().update_step(gradient, variable, lr)

    def get_config(self):
        config = super().get_config()
        config.pop("weight_decay", None)
        config.update(self._bert_config())
        return config


@keras.saving.register_keras_serializable(package="bertkit")
class Lamb(_BertOptimizerMixin, keras.optimizers.Optimizer):
    """LAMB (You et al. 2019) as in the reference implementations (TF-Addons / the MLPerf BERT code):

        m, v = Adam moments (bias corrected);  update = m_hat / (sqrt(v_hat) + epsilon)
        update += weight_decay_rate * w                     unless w is excluded from weight decay
        ratio = ||w|| / ||update||  (1 if either is 0)      unless w is excluded (then ratio = 1)
        w -= lr * ratio * update

    Variables excluded from weight decay are also excluded from layer adaptation (the TF-Addons default
    `exclude_from_layer_adaptation = exclude_from_weight_decay`). Keras' own `keras.optimizers.Lamb` applies decay
    outside the trust ratio and has no exclusion from layer adaptation, hence this class."""

    def __init__(
        self,
        learning_rate=0.001,
        weight_decay_rate=0.01,
        exclude_from_weight_decay=None,
        layerwise_lr_decay=None,
        num_layers=None,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-6,
        variable_depths=None,
        name="lamb",
        **kwargs,
    ):
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self._init_bert(weight_decay_rate, exclude_from_weight_decay, layerwise_lr_decay, num_layers,
                        variable_depths)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])
        self._build_bert_maps(var_list)

    def update_step(self, gradient, variable, learning_rate):
        decay, mult = self._bert_settings(variable)
        dtype = variable.dtype
        lr = ops_cast(learning_rate, dtype) * mult
        gradient = ops_cast(gradient, dtype)
        step = ops_cast(self.iterations + 1, dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, (gradient - m) * (1.0 - self.beta_1))
        self.assign_add(v, (tf.square(gradient) - v) * (1.0 - self.beta_2))
        m_hat = m / (1.0 - tf.pow(ops_cast(self.beta_1, dtype), step))
        v_hat = v / (1.0 - tf.pow(ops_cast(self.beta_2, dtype), step))
        update = m_hat / (tf.sqrt(v_hat) + self.epsilon)
        if decay:
            update = update + self.weight_decay_rate * variable
            w_norm = tf.norm(tf.reshape(ops_cast(variable, dtype), [-1]))
            u_norm = tf.norm(tf.reshape(update, [-1]))
            ratio = tf.where(w_norm > 0, tf.where(u_norm > 0, w_norm / tf.maximum(u_norm, 1e-30), 1.0), 1.0)
        else:
            ratio = 1.0
        self.assign_sub(variable, lr * ratio * update)

    def get_config(self):
        config = super().get_config()
        config.pop("weight_decay", None)
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon})
        config.update(self._bert_config())
        return config


def ops_cast(x, dtype):
    return tf.cast(x, dtype)


def create_optimizer(
    init_lr,
    num_train_steps,
    num_warmup_steps,
    optimizer="adamw",
    weight_decay_rate=0.01,
    beta_1=0.9,
    beta_2=0.999,
    epsilon=1e-6,
    clipnorm=1.0,
    layerwise_lr_decay=None,
    num_layers=None,
    exclude_from_weight_decay=None,
    encoder=None,
):
    """The BERT optimizer: `WarmupLinearDecay(init_lr, num_train_steps, num_warmup_steps)` driving AdamWeightDecay
    (`optimizer="adamw"`) or Lamb (`"lamb"`), global-norm clipping at `clipnorm` (None or 0: off), no weight decay on
    LayerNorm / bias variables, optional layer-wise LR decay (needs `num_layers`; pass `encoder=` to find the
    layers from the encoder's structure, `encoder.embeddings` / `encoder.layer_{i}`, rather than from variable paths,
    which is needed for bertkit's modeling encoders). The depth map is runtime state: it is not in get_config."""
    schedule = WarmupLinearDecay(init_lr, num_train_steps, num_warmup_steps)
    variable_depths = None
    if layerwise_lr_decay is not None and encoder is not None:
        if num_layers is None:
            num_layers = encoder.num_layers
        variable_depths = encoder_variable_depths(encoder)
    kwargs = dict(
        learning_rate=schedule,
        weight_decay_rate=weight_decay_rate,
        exclude_from_weight_decay=exclude_from_weight_decay,
        layerwise_lr_decay=layerwise_lr_decay,
        num_layers=num_layers,
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        global_clipnorm=clipnorm if clipnorm else None,
        variable_depths=variable_depths,
    )
    name = (optimizer or "adamw").lower()
    if name in ("adamw", "adam"):
        return AdamWeightDecay(**kwargs)
    if name == "lamb":
        return Lamb(**kwargs)
    raise UserError(f"--optimizer: unknown optimizer {optimizer!r} (expected adamw or lamb)")


# --------------------------------------------------------------------------------------------------------------------
# Gradients


def global_norm(grads):
    """Global L2 norm of a list of gradients (None entries and IndexedSlices handled), float32 scalar, for logging."""
    values = []
    for g in grads:
        if g is None:
            continue
        if isinstance(g, tf.IndexedSlices):
            g = g.values
        values.append(tf.cast(g, tf.float32))
    if not values:
        return tf.constant(0.0, tf.float32)
    return tf.linalg.global_norm(values)


class GradientAccumulator(tf.Module):
    """Sums gradients over several micro-batches, for a custom train step.

    Create it inside `strategy.scope()` (outside `strategy.run`) from the model's trainable variables. The
    accumulators are ON_READ (replica-local) variables: inside `strategy.run` each replica adds its own gradients, and
    `gradients()` returns that replica's average, which the caller hands to `optimizer.apply(...)` inside the same
    replica context; the optimizer then all-reduces (sums) across replicas as for ordinary gradients.

        with strategy.scope():
            acc = GradientAccumulator(model.trainable_variables)
        def micro_step(batch):                      # strategy.run(micro_step, ...)
            with tf.GradientTape() as tape: loss = ... / global_batch_size
            acc.accumulate(tape.gradient(loss, model.trainable_variables))
        def apply_step():                           # strategy.run(apply_step)
            optimizer.apply(acc.gradients(), model.trainable_variables); acc.reset()

    `gradients(average=True)` divides by the number of `accumulate` calls since the last reset (scale the loss by
    the micro-batch's global batch size, then averaging gives the mean over the accumulated micro-batches).
    """

    def __init__(self, variables, name="gradient_accumulator"):
        super().__init__(name=name)
        variables = list(variables)
        if not variables:
            raise ValueError("GradientAccumulator needs at least one variable")
        on_read = dict(
            trainable=False,
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        self._accumulators = [
            tf.Variable(tf.zeros(v.shape, dtype=v.dtype), name=f"accum_{i}", **on_read) for i, v in enumerate(variables)
        ]
        self._steps = tf.Variable(tf.constant(0, tf.int64), name="accum_steps", **on_read)

    @property
    def step(self):
        """Number of `accumulate` calls since the last reset (this replica's count)."""
        return self._steps.value() if hasattr(self._steps, "value") else tf.convert_to_tensor(self._steps)

    def accumulate(self, grads):
        grads = list(grads)
        if len(grads) != len(self._accumulators):
            raise ValueError(f"expected {len(self._accumulators)} gradients, got {len(grads)}")
        for acc, g in zip(self._accumulators, grads):
            if g is None:
                continue
            if isinstance(g, tf.IndexedSlices):
                g = tf.convert_to_tensor(g)
            acc.assign_add(tf.cast(g, acc.dtype))
        self._steps.assign_add(1)

    def gradients(self, average=True):
        steps = tf.cast(tf.maximum(self._steps.value(), 1), tf.float32)
        out = []
        for acc in self._accumulators:
            value = acc.value()
            out.append(value / tf.cast(steps, value.dtype) if average else value)
        return out

    def reset(self):
        for acc in self._accumulators:
            acc.assign(tf.zeros_like(acc))
        self._steps.assign(0)
