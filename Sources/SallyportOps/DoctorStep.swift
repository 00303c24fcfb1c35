/// One step of `sallyport doctor`: what was checked, how it went, and what to do about it.
public struct DoctorStep: Sendable {
    public enum Outcome: String, Sendable { case ok, warn = "WARN", fail = "FAIL" }
    public var name: String
    public var outcome: Outcome
    public var detail: String
    /// What to do, for `WARN` and `FAIL`.
    public var fix: String?

    public init(_ name: String, _ outcome: Outcome, _ detail: String, fix: String? = nil) {
        self.name = name
        self.outcome = outcome
        self.detail = detail
        self.fix = fix
    }
}
