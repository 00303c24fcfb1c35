/// The Sallyport release.
public enum SallyportVersion {
    /// The version string reported in control hellos and `sallyport --version`.
    public static let current = "0.1.0"
}
