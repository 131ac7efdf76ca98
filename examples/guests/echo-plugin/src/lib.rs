//! A plugin that needs nothing of its host (`example:plugins`, world `standalone-plugin`): it
//! answers messages as the plugin-host example's plugins do, with the greeting `Hello` and its
//! log on stderr. `wasmlet test` scenarios call it with `call:` steps.

wit_bindgen::generate!({ path: "../../plugins/wit", world: "standalone-plugin" });

struct Echo;

impl exports::example::plugins::handler::Guest for Echo {
    fn on_message(message: String) -> Result<String, String> {
        plugin_behaviour::respond(&message, "Hello", |line| eprintln!("{line}"))
    }
}

export!(Echo);
