"""One exception family. The CLI catches ``ForgetflowError`` once and prints a one-line message."""


class ForgetflowError(Exception):
    """Base of every error a user can cause or fix; anything else is a bug."""


class ConfigError(ForgetflowError):
    """params.yaml, an override or a method section is invalid."""


class UnknownNameError(ForgetflowError):
    """A registry was asked for a name it does not hold."""


class DuplicateNameError(ForgetflowError):
    """Two components registered under one name."""


class DataError(ForgetflowError):
    """A dataset, dataset version or manifest is missing or malformed."""


class RequestError(ForgetflowError):
    """An erasure request (or a file of them) is malformed; nothing was accepted."""


class LedgerConflict(ForgetflowError):
    """A request id was reused with different content, or a state change is not allowed."""


class ValidationFailed(ForgetflowError):
    """Great Expectations rejected the dataset table or the manifest and policy says stop."""


class ReceiptError(ForgetflowError):
    """A receipt, the receipt chain or one of its links does not verify."""


class MethodContractError(ForgetflowError):
    """A method asked for data its declared contract does not grant."""


class BatchFailed(ForgetflowError):
    """A deletion batch failed; everything it did was rolled back."""


class NothingToDo(ForgetflowError):
    """No pending request could be claimed."""


class PromotionRefused(ForgetflowError):
    """A promotion or rollback was refused: the model holds erased data, fails the gates, or does not exist."""


class MethodDivergedError(ForgetflowError):
    """An unlearning method returned a model with non-finite weights (NaN or infinity)."""


class LeaseLost(LedgerConflict):
    """A batch's lease on the ledger's batch lock expired or was taken over: its process must stop writing."""
