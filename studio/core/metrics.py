"""Metric names, following TRL's where TRL has one, so practitioners recognise them."""

LOSS = "loss"
REWARDS_CHOSEN = "rewards/chosen"
REWARDS_REJECTED = "rewards/rejected"
REWARDS_MARGINS = "rewards/margins"
REWARDS_ACCURACIES = "rewards/accuracies"
LOGPS_CHOSEN = "logps/chosen"
LOGPS_REJECTED = "logps/rejected"
LOGITS_CHOSEN = "logits/chosen"
LOGITS_REJECTED = "logits/rejected"
ENTROPY = "entropy"
GRAD_NORM = "grad_norm"
LEARNING_RATE = "learning_rate"
TOKENS_PER_SECOND = "tokens_per_second"
MEMORY = "memory"  # peak memory in GiB (GPU when on GPU, else process RSS)
# The mean per-token log pi - log pi_ref over the dataset's chosen (rejected) completions. Not a KL: the
# tokens are the dataset's, not the policy's own samples, so it can be negative (likelihood displacement).
# Named kl/chosen before schema step m005.
LOGRATIO_CHOSEN = "logratio/chosen"
LOGRATIO_REJECTED = "logratio/rejected"
EPOCH = "epoch"
NLL = "nll"
# Counters for a run's cost, cumulative since the run began (a resumed run carries them on), written by every
# recipe: the last value is the run's total. TRL's SFT trainer logs the same token count as num_tokens.
NUM_TOKENS = "num_tokens"  # real (unpadded) tokens in the training batches of the optimizer steps done
SAMPLES_GENERATED = "samples_generated"  # sequences the policy generated: eval samples, and PPO's rollouts

EVAL_PREFIX = "eval/"
# KL(pi || pi_ref) estimated on the policy's own samples (Schulman's estimators, r = log pi_ref - log pi per
# sampled token): k3 = exp(r) - 1 - r (never negative, lower variance) and k1 = -r (unbiased, can be
# negative on few samples); per token, and summed over each sequence.
EVAL_KL = "eval/kl"  # k3, per token
EVAL_KL_SEQ = "eval/kl_seq"  # k3, per sequence
EVAL_KL_K1 = "eval/kl_k1"  # k1, per token
EVAL_KL_K1_SEQ = "eval/kl_k1_seq"  # k1, per sequence
EVAL_PAIRS = "eval/pairs"  # preference pairs the eval metrics are over (what an eval accuracy's n is)

# The policy's own samples at evaluations: K samples for each of a fixed set of probe prompts (see
# studio/train/sampling.py, and studio/core/collapse.py for the diversity measures).
EVAL_SAMPLE_LENGTH = "eval/sample_length"  # mean completion tokens
EVAL_SAMPLE_LENGTH_MEDIAN = "eval/sample_length_median"
EVAL_SAMPLE_CAP = "eval/sample_cap"  # max_new_tokens the samples were cut at (tokens)
EVAL_SAMPLE_HIT_CAP = "eval/sample_hit_cap"  # share of samples cut at the cap instead of ending
EVAL_EOS_RATE = "eval/eos_rate"  # share of samples that ended with EOS / end of turn
EVAL_DISTINCT_1 = "eval/distinct_1"  # distinct unigrams over all sampled tokens
EVAL_DISTINCT_2 = "eval/distinct_2"  # share of distinct bigrams across the sampled generations
EVAL_SELF_SIMILARITY = "eval/self_similarity"  # bigram overlap among the samples of one prompt (self-BLEU-2)
EVAL_REPETITION = "eval/repetition"  # share of a sample's trigrams repeating an earlier one (seq-rep-3)
EVAL_SAMPLE_ENTROPY = "eval/sample_entropy"  # the policy's per-token entropy on its own samples (nats)
EVAL_SAMPLING_SECONDS = "eval/sampling_seconds"  # wall time of this evaluation's sampling and measuring
SAMPLE_METRICS = (EVAL_SAMPLE_LENGTH, EVAL_SAMPLE_LENGTH_MEDIAN, EVAL_SAMPLE_CAP, EVAL_SAMPLE_HIT_CAP, EVAL_EOS_RATE,
                  EVAL_DISTINCT_1, EVAL_DISTINCT_2, EVAL_SELF_SIMILARITY, EVAL_REPETITION, EVAL_SAMPLE_ENTROPY,
                  EVAL_KL, EVAL_KL_SEQ, EVAL_KL_K1, EVAL_KL_K1_SEQ, EVAL_SAMPLING_SECONDS)
"""What an evaluation measures on the policy's own samples (`studio samples` prints them with the samples)."""

# The reward model (TRL's RewardTrainer names): the share of pairs whose chosen response scores above the
# rejected one, the mean score difference, and the mean and spread of all scores of the step's responses.
ACCURACY = "accuracy"
MARGIN = "margin"
MEAN_REWARD = "mean_reward"
STD_REWARD = "std_reward"

# PPO and RLOO, under the names of TRL's last PPO trainer where it had one. Per rollout batch: the reward
# model's score (after the missing-EOS penalty), the KL to the reference summed over each response (the
# estimator of kl_estimator), the KL penalty (-kl_coef * KL, summed) and the two added; the entropy as TRL
# logged it (the sampled tokens' -log pi, summed over each response); the response length in tokens.
OBJECTIVE_SCORES = "objective/scores"
OBJECTIVE_KL = "objective/kl"
OBJECTIVE_ENTROPY = "objective/entropy"
OBJECTIVE_NON_SCORE_REWARD = "objective/non_score_reward"
OBJECTIVE_RLHF_REWARD = "objective/rlhf_reward"
RESPONSE_LENGTH = "completions/mean_length"
# the optimisation over the batch, averaged over its minibatches: 0.5 * mean squared log-ratio to the rollout
# policy, the share of ratios (values) clipped, the two losses, the mean ratio, the entropy of the policy
POLICY_APPROXKL = "policy/approxkl_avg"
POLICY_CLIPFRAC = "policy/clipfrac_avg"
POLICY_ENTROPY = "policy/entropy_avg"
LOSS_POLICY = "loss/policy_avg"
LOSS_VALUE = "loss/value_avg"
VALUE_CLIPFRAC = "val/clipfrac_avg"
VALUE_RATIO = "val/ratio"
NUM_EOS_TOKENS = "val/num_eos_tokens"  # responses of the batch that ended (EOS or end of turn)
KL_COEF = "kl_coef"
# seconds of each phase of the step: sampling, the reward model, the no-grad forwards (rollout log-probs,
# reference, values), and the optimisation
TIME_GENERATE = "time/generate"
TIME_SCORE = "time/score"
TIME_FORWARD = "time/forward"
TIME_OPTIMISE = "time/optimise"

TRAIN_METRICS = (
    LOSS, REWARDS_CHOSEN, REWARDS_REJECTED, REWARDS_MARGINS, REWARDS_ACCURACIES, LOGPS_CHOSEN,
    LOGPS_REJECTED, LOGITS_CHOSEN, LOGITS_REJECTED, ENTROPY, GRAD_NORM, LEARNING_RATE, TOKENS_PER_SECOND,
    MEMORY, LOGRATIO_CHOSEN, LOGRATIO_REJECTED,
)


def eval_name(name: str) -> str:
    """The eval-split twin of a train metric name (`rewards/margins` -> `eval/rewards/margins`)."""
    return name if name.startswith(EVAL_PREFIX) else EVAL_PREFIX + name


COMPARE_METRICS = (REWARDS_MARGINS, eval_name(REWARDS_MARGINS), REWARDS_ACCURACIES, eval_name(REWARDS_ACCURACIES), LOSS,
                   LOGPS_CHOSEN, LOGPS_REJECTED, EVAL_KL, EVAL_SAMPLE_LENGTH, EVAL_DISTINCT_2, EVAL_SELF_SIMILARITY,
                   EVAL_SAMPLE_ENTROPY)
"""Metrics overlaid in Compare and in a report, and listed in their final-metrics tables, for DPO runs (other
methods: METHOD_COMPARE_METRICS): the training signals, then the collapse lens (sampled KL, length, diversity,
entropy on the policy's own samples)."""

METHOD_COMPARE_METRICS: dict[str, tuple[str, ...]] = {
    "reward": (ACCURACY, eval_name(ACCURACY), MARGIN, eval_name(MARGIN), LOSS, eval_name(LOSS)),
    "ppo": (OBJECTIVE_SCORES, eval_name(OBJECTIVE_SCORES), OBJECTIVE_KL, eval_name(OBJECTIVE_KL),
            OBJECTIVE_RLHF_REWARD, RESPONSE_LENGTH, POLICY_CLIPFRAC, EVAL_KL, EVAL_DISTINCT_2),
}
METHOD_COMPARE_METRICS["rloo"] = METHOD_COMPARE_METRICS["ppo"]


def compare_metrics_for(methods) -> tuple[str, ...]:
    """The compared metrics for runs of these methods: each method's own (DPO's for the others), in the order
    of first use, each once."""
    out: list[str] = []
    for method in dict.fromkeys(methods or ["dpo"]):
        out += [m for m in METHOD_COMPARE_METRICS.get(method, COMPARE_METRICS) if m not in out]
    return tuple(out)


def margin_of(accuracy: str) -> str | None:
    """The reward-margin metric an accuracy metric is judged with (`rewards/accuracies` and its eval twin):
    an accuracy logged where that margin is exactly 0 is every pair tied, not a model ranking them wrong."""
    if accuracy.removeprefix(EVAL_PREFIX) != REWARDS_ACCURACIES:
        return None
    return eval_name(REWARDS_MARGINS) if accuracy.startswith(EVAL_PREFIX) else REWARDS_MARGINS
