fn main() {
    let text = std::env::args().nth(1).unwrap().replace("\\n", "\n");
    let r = trellis_model::load(&[trellis_model::SourceFile { path: "x.yaml".into(), text }], "r");
    println!("{r:#?}");
}
