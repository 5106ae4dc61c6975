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

EVAL_PREFIX = "eval/"
# KL(pi || pi_ref) estimated on the policy's own samples (Schulman's estimators, r = log pi_ref - log pi per
# sampled token): k3 = exp(r) - 1 - r (never negative, lower variance) and k1 = -r (unbiased, can be
# negative on few samples); per token, and summed over each sequence.
EVAL_KL = "eval/kl"  # k3, per token
EVAL_KL_SEQ = "eval/kl_seq"  # k3, per sequence
EVAL_KL_K1 = "eval/kl_k1"  # k1, per token
EVAL_KL_K1_SEQ = "eval/kl_k1_seq"  # k1, per sequence
EVAL_SAMPLE_LENGTH = "eval/sample_length"
EVAL_DISTINCT_2 = "eval/distinct_2"  # share of distinct bigrams across the sampled generations

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
EPISODE = "episode"  # responses sampled so far
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

