"""SGLang integration of the KV methods: the `kvm` attention backend plugin and its executors."""
