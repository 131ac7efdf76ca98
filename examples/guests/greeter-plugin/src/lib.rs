//! A plugin of the plugin-host example (`example:plugins`, world `plugin`): it answers
//! messages with the greeting its host configures, logging through its host.

wit_bindgen::generate!({ path: "../../plugins/wit", world: "plugin" });

use example::plugins::host;

struct Greeter;

impl exports::example::plugins::handler::Guest for Greeter {
    fn on_message(message: String) -> Result<String, String> {
        let greeting = host::get_config("greeting").unwrap_or_else(|| "Hello".into());
        plugin_behaviour::respond(&message, &greeting, host::log)
    }
}

export!(Greeter);
