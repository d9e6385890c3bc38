//! The NH-style wire of the `legacy` connector, as the public NH developer-centre
//! pages describe it: one HTTPS POST per call to `/<ApiNm>.nh`, a JSON message with
//! a common `Header` (`ApiNm`, `Tsymd`, `Trtm`, `Iscd`, `FintechApsno`, `ApiSvcCd`,
//! `IsTuno` — the institution's transaction number — and `AccessToken`), the
//! call's own fields, and repeated parts in `REC`. Every answer echoes the header
//! and adds `Rpcd` / `Rsms`; the code is classed through [`super::codes`].
//!
//! Facts and assumptions (also marked on each item below):
//! - from the public pages: the header fields, 농협입금이체 / 타행입금이체
//!   (`Bncd`, `Acno`, `Tram`, `DractOtlt`, `MractOtlt`), 출금이체 (`FinAcno`,
//!   `Tram`…), 잔액조회 (`FinAcno` → `Ldbl`, `RlpmAbamt`), 예금주조회 (`Bncd`,
//!   `Acno` → `Dpnm`) and 거래내역조회 (`Insymd`, `Ineymd`, `TrnsDsnc`, `Lnsq`,
//!   `PageNo`, `Dmcnt` ≤ 100 → `CtntDataYn`, `Iqtcnt`, `REC`), and `Rpcd` `00000`;
//! - assumed: the transfer result inquiry (`InquireTransferResult`, not on the
//!   public pages), the account that pays a deposit transfer (`DractAcno`) and the
//!   one a withdrawal transfer credits (`MractAcno`) — the public layout leaves
//!   both to the institution's contract, settle names them — and `FinAcno` carrying
//!   the account number (settle registers no fin-accounts).
//!
//! Requests refuse unknown fields at every depth (the simulator is strict); answers
//! tolerate extra fields. Amounts are strings of digits. Pure: no I/O, no clock.

use money::{Krw, Timestamp};
use serde::{Deserialize, Serialize};

use super::codes;
use crate::BankError;
use crate::providers::next::kftc;
use crate::types::{AccountNumber, BankTranId, HolderName, TranDate};

/// One NH call: its `ApiNm`, its path, and the `ApiSvcCd` it is sent with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub api: &'static str,
    pub path: &'static str,
    pub service: &'static str,
}

/// 농협입금이체: pays into an NH account.
pub const DEPOSIT_NH: Call = Call {
    api: "ReceivedTransferAccountNumber",
    path: "/ReceivedTransferAccountNumber.nh",
    service: "ReceivedTransferA",
};
/// 타행입금이체: pays into another bank's account.
pub const DEPOSIT_OTHER: Call = Call {
    api: "ReceivedTransferOtherBank",
    path: "/ReceivedTransferOtherBank.nh",
    service: "ReceivedTransferA",
};
/// 출금이체.
pub const WITHDRAW: Call = Call {
    api: "DrawingTransfer",
    path: "/DrawingTransfer.nh",
    service: "DrawingTransferA",
};
/// 이체결과조회 (assumed: the public pages describe re-processing, not this call).
pub const RESULT: Call = Call {
    api: "InquireTransferResult",
    path: "/InquireTransferResult.nh",
    service: "ReceivedTransferA",
};
/// 잔액조회.
pub const BALANCE: Call = Call {
    api: "InquireBalance",
    path: "/InquireBalance.nh",
    service: "ReceivedTransferA",
};
/// 예금주조회 of an NH account.
pub const HOLDER_NH: Call = Call {
    api: "InquireDepositorAccountNumber",
    path: "/InquireDepositorAccountNumber.nh",
    service: "DrawingTransferA",
};
/// 타행예금주조회.
pub const HOLDER_OTHER: Call = Call {
    api: "InquireDepositorOtherBank",
    path: "/InquireDepositorOtherBank.nh",
    service: "DrawingTransferA",
};
/// 거래내역조회.
pub const HISTORY: Call = Call {
    api: "InquireTransactionHistory",
    path: "/InquireTransactionHistory.nh",
    service: "ReceivedTransferA",
};

/// Every call, for the simulator's routes.
pub const CALLS: [Call; 8] = [
    DEPOSIT_NH,
    DEPOSIT_OTHER,
    WITHDRAW,
    RESULT,
    BALANCE,
    HOLDER_NH,
    HOLDER_OTHER,
    HISTORY,
];

/// Bank codes of NH itself (NH bank, NH co-ops); others are "other bank" calls.
pub const NH_BANK_CODES: [&str; 2] = ["011", "012"];
/// Lines per 거래내역조회 page (`Dmcnt`), the most the spec allows.
pub const HISTORY_PAGE_MAX: u32 = 100;
/// Highest page number (`PageNo` is 4 digits).
pub const HISTORY_PAGE_NO_MAX: u32 = 9_999;
/// Longest print content (`DractOtlt` / `MractOtlt`), in characters.
pub const PRINT_CHARS_MAX: usize = 25;

/// The common part of every request.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RequestHeader {
    pub api_nm: String,
    /// Transmission date, `YYYYMMDD` (KST).
    pub tsymd: String,
    /// Transmission time, `hhmmss` (KST).
    pub trtm: String,
    pub iscd: String,
    pub fintech_apsno: String,
    pub api_svc_cd: String,
    /// The institution's transaction number: for a transfer, its `bank_tran_id`.
    pub is_tuno: String,
    pub access_token: String,
}

impl std::fmt::Debug for RequestHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestHeader")
            .field("api_nm", &self.api_nm)
            .field("tsymd", &self.tsymd)
            .field("trtm", &self.trtm)
            .field("iscd", &self.iscd)
            .field("is_tuno", &self.is_tuno)
            .field("access_token", &"<redacted>")
            .finish()
    }
}

/// The common part of every answer: the request's header (without the token)
/// echoed, plus the answer code.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AnswerHeader {
    pub api_nm: String,
    pub tsymd: String,
    pub trtm: String,
    pub iscd: String,
    pub fintech_apsno: String,
    pub api_svc_cd: String,
    pub is_tuno: String,
    pub rpcd: String,
    pub rsms: String,
}

impl AnswerHeader {
    /// The echo of `sent` with the code of `outcome` (the simulator's side).
    pub fn answering(sent: &RequestHeader, outcome: &Result<(), BankError>) -> AnswerHeader {
        AnswerHeader {
            api_nm: sent.api_nm.clone(),
            tsymd: sent.tsymd.clone(),
            trtm: sent.trtm.clone(),
            iscd: sent.iscd.clone(),
            fintech_apsno: sent.fintech_apsno.clone(),
            api_svc_cd: sent.api_svc_cd.clone(),
            is_tuno: sent.is_tuno.clone(),
            rpcd: codes::answer_code(outcome),
            rsms: match outcome {
                Ok(()) => "정상처리 되었습니다.".to_owned(),
                Err(error) => error.to_string(),
            },
        }
    }
}

/// 농협입금이체 / 타행입금이체.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DepositRequest {
    pub header: RequestHeader,
    pub bncd: String,
    pub acno: String,
    pub tram: String,
    pub dract_otlt: String,
    pub mract_otlt: String,
    /// The paying (contracted) account. Assumed: not on the public layout.
    pub dract_acno: String,
}

/// 출금이체.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct WithdrawRequest {
    pub header: RequestHeader,
    /// The consenting user's account (assumed: the account number itself).
    pub fin_acno: String,
    pub tram: String,
    pub dract_otlt: String,
    pub mract_otlt: String,
    /// The credited (contracted) account. Assumed: not on the public layout.
    pub mract_acno: String,
}

/// An answer that is only a header (입금이체, and every refusal).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HeaderAnswer {
    pub header: AnswerHeader,
}

/// 출금이체's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WithdrawAnswer {
    pub header: AnswerHeader,
    pub fin_acno: String,
    /// Registration date, `YYYYMMDD`.
    pub rgsn_ymd: String,
}

/// 이체결과조회 (assumed shape): the original transfer by call, number, date, amount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ResultRequest {
    pub header: RequestHeader,
    pub org_api_nm: String,
    pub org_is_tuno: String,
    pub org_tsymd: String,
    pub tram: String,
}

/// 이체결과조회's answer (assumed shape): the original's own answer code.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ResultAnswer {
    pub header: AnswerHeader,
    pub org_is_tuno: String,
    pub org_rpcd: String,
    pub org_rsms: String,
    pub dract_acno: String,
    pub mract_acno: String,
    pub tram: String,
}

/// 잔액조회.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct BalanceRequest {
    pub header: RequestHeader,
    pub fin_acno: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BalanceAnswer {
    pub header: AnswerHeader,
    pub fin_acno: String,
    /// Ledger balance (원장잔액).
    pub ldbl: String,
    /// Amount available to pay (실지급가능액).
    pub rlpm_abamt: String,
}

/// 예금주조회.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct HolderRequest {
    pub header: RequestHeader,
    pub bncd: String,
    pub acno: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HolderAnswer {
    pub header: AnswerHeader,
    pub bncd: String,
    pub acno: String,
    /// The holder's name (예금주명).
    pub dpnm: String,
}

/// 거래내역조회, one page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct HistoryRequest {
    pub header: RequestHeader,
    pub bncd: String,
    pub acno: String,
    pub insymd: String,
    pub ineymd: String,
    /// `A` all, `M` in, `D` out.
    pub trns_dsnc: String,
    /// `ASC` or `DESC`.
    pub lnsq: String,
    pub page_no: String,
    pub dmcnt: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HistoryAnswer {
    pub header: AnswerHeader,
    /// `Y` when more lines follow (ask `PageNo + 1`).
    pub ctnt_data_yn: String,
    pub tot_cnt: String,
    pub iqtcnt: String,
    #[serde(rename = "REC")]
    pub rec: Vec<HistoryLine>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HistoryLine {
    pub trdd: String,
    pub txtm: String,
    /// `1` opening (in), `2` in, `3` out, `4` closing (out).
    pub mnrc_drot_dsnc: String,
    pub tram: String,
    pub aftr_blnc: String,
    pub trns_af_acnt_blnc_smbl_cd: String,
    pub smr: Option<String>,
    pub hnis_cd: String,
    pub hnbr_cd: String,
    /// `0` normal, `1` cancelled.
    pub ccyn: String,
    pub tuno: String,
    pub bnpr_cntn: String,
}

// ---- shared helpers ----

/// `Tsymd` + `Trtm` of `at` (KST).
pub fn kst_date_time(at: Timestamp) -> (String, String) {
    let text = kftc::tran_dtime(at);
    (text[..8].to_owned(), text[8..].to_owned())
}

/// Parses `Tsymd` + `Trtm` back to a timestamp; `None` when malformed.
pub fn parse_date_time(tsymd: &str, trtm: &str) -> Option<Timestamp> {
    kftc::parse_api_tran_dtm(&format!("{tsymd}{trtm}000"))
}

/// An amount as the wire writes it.
pub fn amount_text(amount: Krw) -> String {
    amount.get().to_string()
}

/// Parses a `Tram`-style string of digits; a bad one makes the answer unreadable.
pub fn parse_amount(field: &str, text: &str) -> Result<Krw, BankError> {
    kftc::parse_amount(field, text)
}

/// Shortens print content to what the wire allows.
pub fn print_content(text: &str) -> String {
    text.chars().take(PRINT_CHARS_MAX).collect()
}

fn wrong(what: String) -> BankError {
    BankError::Unrecognized {
        status: 200,
        code: what,
    }
}

/// Checks an answer's header: it must echo our call and our `IsTuno` and
/// institution (else it is not our answer: unknown), then the code decides.
pub fn check_answer(sent: &RequestHeader, got: &AnswerHeader) -> Result<(), BankError> {
    if got.api_nm != sent.api_nm || got.is_tuno != sent.is_tuno || got.iscd != sent.iscd {
        return Err(wrong(format!(
            "answer header echoes {} {} {}, sent {} {} {}",
            got.api_nm, got.is_tuno, got.iscd, sent.api_nm, sent.is_tuno, sent.iscd
        )));
    }
    tracing::debug!(api = %got.api_nm, is_tuno = %got.is_tuno, rpcd = %got.rpcd, "nh answer");
    match codes::table().classify(&got.rpcd) {
        Err(BankError::CredentialsRefused(_)) => Err(crate::providers::credentials_refused(
            "legacy",
            &format!("AccessToken refused ({})", got.rpcd),
        )),
        other => other,
    }
}

/// The holder name as the wire carries it, validated.
pub fn holder(text: &str) -> Result<HolderName, BankError> {
    HolderName::new(text).map_err(|_| wrong(format!("Dpnm {text:?}")))
}

/// Parses the fields every transfer request names (the simulator's side).
pub fn transfer_fields(
    header: &RequestHeader,
    tram: &str,
) -> Result<(BankTranId, TranDate, Krw), BankError> {
    let id = BankTranId::new(&header.is_tuno)?;
    let date = TranDate::parse(&header.tsymd)?;
    let amount =
        parse_amount("Tram", tram).map_err(|_| BankError::BadAmount(format!("Tram {tram:?}")))?;
    Ok((id, date, amount))
}

/// The account a request names, or the refusal the bank answers.
pub fn account(text: &str) -> Result<AccountNumber, BankError> {
    AccountNumber::new(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_use_the_wire_names_and_never_print_the_token() {
        let header = RequestHeader {
            api_nm: "InquireBalance".into(),
            tsymd: "20250301".into(),
            trtm: "101530".into(),
            iscd: "000013".into(),
            fintech_apsno: "001".into(),
            api_svc_cd: "ReceivedTransferA".into(),
            is_tuno: "M202500001U000000001".into(),
            access_token: "tok-123".into(),
        };
        let json = serde_json::to_value(&header).unwrap();
        assert_eq!(json["ApiNm"], "InquireBalance");
        assert_eq!(json["IsTuno"], "M202500001U000000001");
        assert_eq!(json["FintechApsno"], "001");
        assert!(!format!("{header:?}").contains("tok-123"));
        let at = parse_date_time("20250301", "101530").unwrap();
        assert_eq!(kst_date_time(at), ("20250301".into(), "101530".into()));
    }

    #[test]
    fn an_answer_for_another_call_is_not_ours() {
        let sent = RequestHeader {
            api_nm: "DrawingTransfer".into(),
            tsymd: "20250301".into(),
            trtm: "101530".into(),
            iscd: "000013".into(),
            fintech_apsno: "001".into(),
            api_svc_cd: "DrawingTransferA".into(),
            is_tuno: "M202500001U000000001".into(),
            access_token: "t".into(),
        };
        let mut got = AnswerHeader::answering(&sent, &Ok(()));
        assert_eq!(check_answer(&sent, &got), Ok(()));
        got.is_tuno = "M202500001U000000002".into();
        assert!(check_answer(&sent, &got).unwrap_err().is_outcome_unknown());
    }
}
