module example.com/hydra-go

// No requirements: the example builds without the network.
go 1.19
