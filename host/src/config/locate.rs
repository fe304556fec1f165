pub fn locate() {}
