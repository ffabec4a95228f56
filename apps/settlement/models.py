"""The double-entry ledger: the book of record for customer cash and shares.

Invariants (enforced in PostgreSQL, see the migrations, not only in Python):
- Every ``JournalEntry`` sums to zero per asset (currency or instrument symbol): a statement-level trigger checks
  every entry an INSERT into ``settlement_posting`` touched, at the end of that statement (migration 0007), so an
  entry's postings are written in one statement.
- ``JournalEntry`` and ``Posting`` rows are immutable: triggers refuse UPDATE and DELETE (corrections are new,
  reversing entries).
- ``(source_type, source_id)`` is unique: posting the same fill / transfer / release twice is impossible.
- ``LedgerAccount.balance`` is a cached sum of its postings, updated in the same transaction as the postings
  (``UPDATE ... RETURNING`` after the row is locked); ``selectors.ledger_balance_breaks`` proves it.
- Customer settled cash, held cash and the per-order hold remainders can never go negative (``CHECK``).

Sign convention: a posting's amount is positive when it increases what the ledger account holds. Customer accounts
are normally non-negative; the house side (clearing, funding in transit, fees) is the counterpart, so the sum of
every balance per asset (the trial balance) is always zero.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q

from apps.accounts.models import BrokerageAccount
from apps.core.money import (
    MONEY_DECIMAL_PLACES,
    MONEY_MAX_DIGITS,
    QTY_DECIMAL_PLACES,
    QTY_MAX_DIGITS,
)
from engine.commands import SPLIT_TERM_MAX

CURRENCY = "USD"

# Ledger amounts hold both cash (4 dp) and share quantities (9 dp): the quantity precision covers both; a CHECK
# keeps cash postings on the money quantum.
AMOUNT_MAX_DIGITS = QTY_MAX_DIGITS
AMOUNT_DECIMAL_PLACES = QTY_DECIMAL_PLACES


def _amount_field(**kwargs: object) -> models.DecimalField:  # type: ignore[type-arg]
    return models.DecimalField(
        max_digits=AMOUNT_MAX_DIGITS,
        decimal_places=AMOUNT_DECIMAL_PLACES,
        **kwargs,  # type: ignore[arg-type]
    )


def _money_field(**kwargs: object) -> models.DecimalField:  # type: ignore[type-arg]
    return models.DecimalField(
        max_digits=MONEY_MAX_DIGITS,
        decimal_places=MONEY_DECIMAL_PLACES,
        **kwargs,  # type: ignore[arg-type]
    )


class LedgerAccount(models.Model):
    class Kind(models.TextChoices):
        # customer cash (asset = currency)
        CASH_SETTLED = "cash_settled"
        CASH_UNSETTLED = "cash_unsettled"  # sale proceeds not yet settled (net of what holds drew from them)
        CASH_HELD = "cash_held"  # reserved for open buy orders
        # customer securities (asset = symbol)
        SEC_SETTLED = "sec_settled"
        SEC_UNSETTLED = "sec_unsettled"  # signed: + bought not yet settled, - sold not yet settled
        # house side (no customer)
        CLEARING = "clearing"  # the street / clearing counterparty for trades (cash and shares)
        FUNDING_IN_TRANSIT = "funding_in_transit"  # external deposits and withdrawals
        FEES = "fees"  # commissions and regulatory fees collected
        HOUSE = "house"  # the firm's own account (corporate actions, cash in lieu, corrections)

    CUSTOMER_KINDS = (
        Kind.CASH_SETTLED,
        Kind.CASH_UNSETTLED,
        Kind.CASH_HELD,
        Kind.SEC_SETTLED,
        Kind.SEC_UNSETTLED,
    )
    CASH_KINDS = (Kind.CASH_SETTLED, Kind.CASH_UNSETTLED, Kind.CASH_HELD)

    id = models.BigAutoField(primary_key=True)
    # No index of its own: ``settlement_ledgeraccount_uniq`` leads with it.
    account = models.ForeignKey(
        BrokerageAccount,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="ledger_accounts",
        db_index=False,
    )
    kind = models.CharField(max_length=24, choices=Kind.choices)
    asset = models.CharField(max_length=16, help_text="currency code or instrument symbol")
    balance = _amount_field(default=Decimal(0), help_text="cached sum of postings")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "kind", "asset"],
                name="settlement_ledgeraccount_uniq",
                nulls_distinct=False,
            ),
            models.CheckConstraint(
                condition=Q(account__isnull=False, kind__in=["cash_settled", "cash_unsettled", "cash_held"])
                | Q(account__isnull=False, kind__in=["sec_settled", "sec_unsettled"])
                | Q(account__isnull=True, kind__in=["clearing", "funding_in_transit", "fees", "house"]),
                name="settlement_ledgeraccount_owner_matches_kind",
            ),
            # No negative cash on a customer's settled or held cash (the double-spend backstop).
            models.CheckConstraint(
                condition=Q(balance__gte=0) | ~Q(kind__in=["cash_settled", "cash_held"]),
                name="settlement_ledgeraccount_cash_nonneg",
            ),
        ]

    def __str__(self) -> str:
        owner = self.account_id or "house"
        return f"{owner}:{self.kind}:{self.asset}"


class JournalEntry(models.Model):
    """One balanced, immutable business event in the ledger."""

    class EntryType(models.TextChoices):
        # Alpaca activity types
        FILL = "FILL"
        CSD = "CSD"  # cash deposit
        CSW = "CSW"  # cash withdrawal
        FEE = "FEE"
        DIV = "DIV"
        SPLIT = "SPLIT"
        JNLC = "JNLC"  # cash journal
        JNLS = "JNLS"  # securities journal (ACATS in/out)
        # internal movements (not shown as activities)
        HOLD = "HOLD"
        HOLD_RELEASE = "HOLD_RELEASE"
        SETTLE = "SETTLE"
        REVERSAL = "REVERSAL"

    id = models.BigAutoField(primary_key=True)
    activity_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    source_type = models.CharField(max_length=32)
    source_id = models.CharField(max_length=128)
    entry_type = models.CharField(max_length=16, choices=EntryType.choices)
    account = models.ForeignKey(  # indexed by ``settlement_je_account_id_idx`` (account, id)
        BrokerageAccount,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="journal_entries",
        db_index=False,
    )
    description = models.CharField(max_length=300, blank=True, default="")
    effective_date = models.DateField(help_text="trade date / business date in America/New_York")
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    # Activity details for the API (symbol, side, qty, price, order_id ...), decimals as strings.
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source_type", "source_id"], name="settlement_journalentry_source_uniq"
            ),
        ]
        indexes = [models.Index(fields=["account", "id"], name="settlement_je_account_id_idx")]
        verbose_name_plural = "journal entries"

    def __str__(self) -> str:
        return f"{self.entry_type} {self.source_type}:{self.source_id}"


class Posting(models.Model):
    id = models.BigAutoField(primary_key=True)
    entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="postings")
    ledger_account = models.ForeignKey(  # indexed by ``settlement_posting_la_idx`` (ledger_account, id)
        LedgerAccount, on_delete=models.PROTECT, related_name="postings", db_index=False
    )
    asset = models.CharField(max_length=16)
    amount = _amount_field()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="settlement_posting_nonzero"),
        ]
        indexes = [models.Index(fields=["ledger_account", "id"], name="settlement_posting_la_idx")]

    def __str__(self) -> str:
        return f"{self.ledger_account_id} {self.amount} {self.asset}"


class CashHold(models.Model):
    """Cash reserved for one buy order. ``unsettled_remaining`` is the part drawn from unsettled proceeds."""

    id = models.BigAutoField(primary_key=True)
    order_id = models.CharField(max_length=64)  # unique: the constraint below (no LIKE index beside it)
    account = models.ForeignKey(BrokerageAccount, on_delete=models.PROTECT, related_name="cash_holds")
    amount = _money_field()
    remaining = _money_field()
    unsettled_remaining = _money_field(default=Decimal(0))
    release_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["order_id"], name="settlement_cashhold_order_uniq"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="settlement_cashhold_amount_pos"),
            models.CheckConstraint(
                condition=Q(remaining__gte=0), name="settlement_cashhold_remaining_nonneg"
            ),
            models.CheckConstraint(
                condition=Q(unsettled_remaining__gte=0) & Q(unsettled_remaining__lte=models.F("remaining")),
                name="settlement_cashhold_unsettled_within",
            ),
        ]

    def __str__(self) -> str:
        return f"hold {self.order_id} {self.remaining}/{self.amount}"


class ShareReservation(models.Model):
    """Shares reserved for one sell order (no naked shorts on cash accounts)."""

    id = models.BigAutoField(primary_key=True)
    order_id = models.CharField(max_length=64)  # unique: the constraint below (no LIKE index beside it)
    account = models.ForeignKey(  # indexed by ``settlement_sr_acct_sym_idx`` (account, symbol)
        BrokerageAccount, on_delete=models.PROTECT, related_name="share_reservations", db_index=False
    )
    symbol = models.CharField(max_length=16)
    qty = models.DecimalField(max_digits=QTY_MAX_DIGITS, decimal_places=QTY_DECIMAL_PLACES)
    remaining = models.DecimalField(max_digits=QTY_MAX_DIGITS, decimal_places=QTY_DECIMAL_PLACES)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["order_id"], name="settlement_sharereservation_order_uniq"),
            models.CheckConstraint(condition=Q(qty__gt=0), name="settlement_sharereservation_qty_pos"),
            models.CheckConstraint(
                condition=Q(remaining__gte=0), name="settlement_sharereservation_remaining_nonneg"
            ),
        ]
        indexes = [models.Index(fields=["account", "symbol"], name="settlement_sr_acct_sym_idx")]

    def __str__(self) -> str:
        return f"reserve {self.order_id} {self.symbol} {self.remaining}/{self.qty}"


class SettlementObligation(models.Model):
    """One unsettled leg of a trade, moved from unsettled to settled on its settlement date."""

    id = models.BigAutoField(primary_key=True)
    account = models.ForeignKey(BrokerageAccount, on_delete=models.PROTECT, related_name="obligations")
    trade_entry = models.ForeignKey(  # indexed by ``settlement_obligation_uniq`` (trade_entry, kind, asset)
        JournalEntry, on_delete=models.PROTECT, related_name="obligations", db_index=False
    )
    kind = models.CharField(max_length=8, choices=[("cash", "cash"), ("sec", "sec")])
    asset = models.CharField(max_length=16)
    amount = _amount_field(help_text="signed: + receivable, - deliverable")
    trade_date = models.DateField()
    settle_date = models.DateField()
    settled_entry = models.ForeignKey(
        JournalEntry, on_delete=models.PROTECT, null=True, blank=True, related_name="settled_obligations"
    )
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["trade_entry", "kind", "asset"], name="settlement_obligation_uniq"
            ),
        ]
        indexes = [models.Index(fields=["settle_date", "settled_at"], name="settlement_obl_due_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.asset} {self.amount} due {self.settle_date}"


class FeeRule(models.Model):
    """A fee schedule line, versioned by ``effective_from``: the newest line per ``code`` in force applies.

    fee = clamp(notional * rate + qty * per_share, min_fee, max_fee), rounded up to the cent; a rule with
    ``active=False`` from a date switches that fee off.
    """

    class Side(models.TextChoices):
        BUY = "buy"
        SELL = "sell"
        BOTH = "both"

    id = models.BigAutoField(primary_key=True)
    code = models.CharField(max_length=32, help_text="e.g. commission, sec_fee, finra_taf")
    effective_from = models.DateField()
    active = models.BooleanField(default=True)
    side = models.CharField(max_length=4, choices=Side.choices, default=Side.BOTH)
    rate = models.DecimalField(
        max_digits=16, decimal_places=12, default=Decimal(0), help_text="per $ notional"
    )
    per_share = models.DecimalField(max_digits=16, decimal_places=9, default=Decimal(0))
    min_fee = _money_field(default=Decimal(0))
    max_fee = _money_field(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["code", "effective_from"], name="settlement_feerule_version_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} from {self.effective_from}"


class CostBasisMethod(models.TextChoices):
    """Which open lots a sell relieves first (the account's default lot relief method).

    SPEC_ID relieves the lots chosen for the order (``LotSelection``) and FIFO for any quantity not covered;
    a selection made under any other method is honoured the same way, that method covering the rest.
    """

    FIFO = "FIFO"  # oldest acquired first
    LIFO = "LIFO"  # newest acquired first
    HIFO = "HIFO"  # highest cost per share first
    SPEC_ID = "SPEC_ID"  # specific identification, FIFO for the remainder


class CostBasisSetting(models.Model):
    """The account's default lot relief method; no row means FIFO. Read when a sell fill books, so a change
    applies to sells booked after it (earlier closings are never re-lotted)."""

    id = models.BigAutoField(primary_key=True)
    account = models.OneToOneField(
        BrokerageAccount, on_delete=models.PROTECT, related_name="cost_basis_setting"
    )
    method = models.CharField(max_length=8, choices=CostBasisMethod.choices, default=CostBasisMethod.FIFO)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(method__in=["FIFO", "LIFO", "HIFO", "SPEC_ID"]),
                name="settlement_costbasis_method_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_id}: {self.method}"


class TaxLot(models.Model):
    """An open (or closed) lot of shares bought at one price; sells close lots by the account's method."""

    id = models.BigAutoField(primary_key=True)
    account = models.ForeignKey(  # indexed by ``settlement_lot_idx`` (account, symbol, acquired_date, id)
        BrokerageAccount, on_delete=models.PROTECT, related_name="tax_lots", db_index=False
    )
    symbol = models.CharField(max_length=16)
    source_entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="lots")
    acquired_date = models.DateField()
    qty = models.DecimalField(max_digits=QTY_MAX_DIGITS, decimal_places=QTY_DECIMAL_PLACES)
    remaining = models.DecimalField(max_digits=QTY_MAX_DIGITS, decimal_places=QTY_DECIMAL_PLACES)
    cost_basis = _money_field(help_text="total cost of ``qty`` including fees")
    remaining_cost = _money_field()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(remaining__gte=0), name="settlement_taxlot_remaining_nonneg"),
            models.CheckConstraint(
                condition=Q(remaining__lte=models.F("qty")), name="settlement_taxlot_within"
            ),
        ]
        indexes = [
            models.Index(fields=["account", "symbol", "acquired_date", "id"], name="settlement_lot_idx")
        ]

    def __str__(self) -> str:
        return f"lot {self.symbol} {self.remaining}/{self.qty}"


class RealizedGain(models.Model):
    """The part of a lot closed by one sell fill."""

    class Term(models.TextChoices):
        SHORT = "short"
        LONG = "long"

    id = models.BigAutoField(primary_key=True)
    lot = models.ForeignKey(TaxLot, on_delete=models.PROTECT, related_name="closings")
    sell_entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="realized_gains")
    qty = models.DecimalField(max_digits=QTY_MAX_DIGITS, decimal_places=QTY_DECIMAL_PLACES)
    proceeds = _money_field()
    cost_basis = _money_field()
    gain = _money_field()
    term = models.CharField(max_length=5, choices=Term.choices)
    closed_date = models.DateField()
    relief_method = models.CharField(
        max_length=8, blank=True, default="", help_text="how the lot was picked (SPEC_ID when selected)"
    )

    def __str__(self) -> str:
        return f"{self.lot_id} {self.qty} gain {self.gain}"


class LotSelection(models.Model):
    """One lot the customer chose for an open sell order (specific identification).

    Recorded only before any fill of the order books; ``remaining`` is what later fills still relieve from the
    lot, in ``seq`` order, before the account's method covers the rest. The lot belongs to the order's account
    and symbol (checked by the service).
    """

    id = models.BigAutoField(primary_key=True)
    # No index of its own: ``settlement_lotselection_uniq`` leads with it.
    reservation = models.ForeignKey(
        ShareReservation, on_delete=models.PROTECT, related_name="lot_selections", db_index=False
    )
    lot = models.ForeignKey(TaxLot, on_delete=models.PROTECT, related_name="selections")
    seq = models.PositiveIntegerField()
    qty = models.DecimalField(max_digits=QTY_MAX_DIGITS, decimal_places=QTY_DECIMAL_PLACES)
    remaining = models.DecimalField(max_digits=QTY_MAX_DIGITS, decimal_places=QTY_DECIMAL_PLACES)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["reservation", "lot"], name="settlement_lotselection_uniq"),
            models.CheckConstraint(condition=Q(qty__gt=0), name="settlement_lotselection_qty_pos"),
            models.CheckConstraint(
                condition=Q(remaining__gte=0) & Q(remaining__lte=models.F("qty")),
                name="settlement_lotselection_remaining_within",
            ),
        ]

    def __str__(self) -> str:
        return f"select lot {self.lot_id} {self.remaining}/{self.qty} for {self.reservation_id}"


class ReconciliationReport(models.Model):
    """One run of one reconciliation job; ``breaks`` lists every classified difference found."""

    class Status(models.TextChoices):
        CLEAN = "clean"
        BREAKS = "breaks"

    id = models.BigAutoField(primary_key=True)
    job = models.CharField(max_length=40)
    run_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=8, choices=Status.choices)
    breaks = models.JSONField(default=list, blank=True)
    halted_accounts = models.JSONField(default=list, blank=True)
    resolved = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["job", "-run_at"], name="settlement_recon_job_idx")]

    def __str__(self) -> str:
        return f"{self.job} {self.run_at:%Y-%m-%d %H:%M} {self.status}"


class ReconciliationAlert(models.Model):
    """One alert per break found (also logged at ERROR); operations acknowledge it after resolving."""

    id = models.BigAutoField(primary_key=True)
    report = models.ForeignKey(ReconciliationReport, on_delete=models.PROTECT, related_name="alerts")
    job = models.CharField(max_length=40)
    kind = models.CharField(max_length=48, help_text="the break's classification")
    account = models.ForeignKey(
        BrokerageAccount,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reconciliation_alerts",
    )
    details = models.JSONField(default=dict, blank=True)
    raised_at = models.DateTimeField(auto_now_add=True)
    acknowledged = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["acknowledged", "-raised_at"], name="settlement_alert_open_idx")]

    def __str__(self) -> str:
        return f"{self.job}: {self.kind} ({self.account_id or 'house'})"


# --------------------------------------------------------------------------------------------------------------
# Corporate actions


class CorporateAction(models.Model):
    """A split or a cash dividend entered by operations; applied once (``applied_at``) by the services.

    Split: every holder's position becomes ``qty * ratio_num / ratio_den`` rounded down to whole shares; the
    fraction is paid in cash at ``cash_in_lieu_price`` (per post-split share). 3-for-2 is num=3, den=2; a
    1-for-10 reverse split is num=1, den=10. Dividend: ``cash_per_share`` paid on ``pay_date`` to the
    holders of record (settled shares at the end of ``record_date``).
    """

    class Kind(models.TextChoices):
        SPLIT = "split"
        DIVIDEND = "dividend"

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    symbol = models.CharField(max_length=16)
    description = models.CharField(max_length=200, blank=True, default="")
    effective_date = models.DateField(help_text="split: ex-date (the first session on new terms)")
    ratio_num = models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(SPLIT_TERM_MAX)]
    )
    ratio_den = models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(SPLIT_TERM_MAX)]
    )
    cash_in_lieu_price = models.DecimalField(
        max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES, null=True, blank=True
    )
    cash_per_share = models.DecimalField(
        max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES, null=True, blank=True
    )
    record_date = models.DateField(null=True, blank=True)
    pay_date = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(
                        kind="split",
                        ratio_num__gt=0,
                        ratio_den__gt=0,
                        # The engine's domain (engine.commands.SPLIT_TERM_MAX): its SplitApply carries them.
                        ratio_num__lte=SPLIT_TERM_MAX,
                        ratio_den__lte=SPLIT_TERM_MAX,
                        cash_in_lieu_price__gt=0,
                    )
                    & ~Q(ratio_num=models.F("ratio_den"))
                )
                | Q(kind="dividend", cash_per_share__gt=0, record_date__isnull=False, pay_date__isnull=False),
                name="settlement_corporateaction_terms",
            ),
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.SPLIT:
            return f"{self.symbol} {self.ratio_num}-for-{self.ratio_den} split {self.effective_date}"
        return f"{self.symbol} dividend {self.cash_per_share} pay {self.pay_date}"


# --------------------------------------------------------------------------------------------------------------
# Good-faith violations (cash accounts)


class GoodFaithRule(models.Model):
    """The consequence of repeated good-faith violations, versioned by ``effective_from`` (newest in force).

    ``max_violations`` GFVs within ``window_months`` months -> settled-cash-only for ``restriction_days`` days.
    Without any row the standard rule applies (3 in 12 months -> 90 days).
    """

    id = models.BigAutoField(primary_key=True)
    effective_from = models.DateField(unique=True)
    max_violations = models.PositiveIntegerField(default=3)
    window_months = models.PositiveIntegerField(default=12)
    restriction_days = models.PositiveIntegerField(default=90)

    def __str__(self) -> str:
        return f"{self.max_violations} GFV / {self.window_months} mo -> {self.restriction_days} d"


class GoodFaithViolation(models.Model):
    """A sale, before they settled, of shares bought with unsettled sale proceeds (one row per closed lot)."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: ``settlement_gfv_acct_idx`` leads with it.
    account = models.ForeignKey(
        BrokerageAccount, on_delete=models.PROTECT, related_name="good_faith_violations", db_index=False
    )
    symbol = models.CharField(max_length=16)
    # No index of its own: ``settlement_gfv_uniq`` leads with it.
    buy_entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="+", db_index=False)
    sell_entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="+")
    trade_date = models.DateField(help_text="trade date of the sale")
    funds_settle_date = models.DateField(help_text="when the proceeds that paid for the buy settle")
    unsettled_funded = _money_field()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["buy_entry", "sell_entry"], name="settlement_gfv_uniq"),
        ]
        indexes = [models.Index(fields=["account", "trade_date"], name="settlement_gfv_acct_idx")]

    def __str__(self) -> str:
        return f"GFV {self.account_id} {self.symbol} {self.trade_date}"


class CashAccountRestriction(models.Model):
    """Settled-cash-only trading for ``start_date``..``end_date`` (inclusive), imposed by the GFV rule."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: ``settlement_restr_acct_idx`` leads with it.
    account = models.ForeignKey(
        BrokerageAccount, on_delete=models.PROTECT, related_name="cash_restrictions", db_index=False
    )
    start_date = models.DateField()
    end_date = models.DateField()
    reason = models.CharField(max_length=200)
    trigger = models.OneToOneField(
        GoodFaithViolation, on_delete=models.PROTECT, null=True, blank=True, related_name="restriction"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(end_date__gte=models.F("start_date")), name="settlement_restriction_dates"
            ),
        ]
        indexes = [models.Index(fields=["account", "end_date"], name="settlement_restr_acct_idx")]

    def __str__(self) -> str:
        return f"settled cash only {self.account_id} {self.start_date}..{self.end_date}"
