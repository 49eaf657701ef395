from mindspore import ops
import mindspore.nn as nn
from mindspore import Tensor, Parameter
import numpy as np
class ApplyAdamWithAmsgradNet(nn.Cell):
    def __init__(self, use_locking=False):
        super(ApplyAdamWithAmsgradNet, self).__init__()
        self.apply_adam_with_amsgrad = ops.ApplyAdamWithAmsgradV2(use_locking)
        self.var = Parameter(Tensor(np.array([[0.2, 0.2], [0.2, 0.2]]).astype(np.float32)), name="var")
        self.m = Parameter(Tensor(np.array([[0.1, 0.2], [0.4, 0.3]]).astype(np.float32)), name="m")
        self.v = Parameter(Tensor(np.array([[0.2, 0.1], [0.3, 0.4]]).astype(np.float32)), name="v")
        self.vhat = Parameter(Tensor(np.array([[0.1, 0.2], [0.6, 0.2]]).astype(np.float32)), name="vhat")
        self.beta1 = 0.8
        self.beta2 = 0.999
        self.epsilon = 1e-8
        self.beta1_power = 0.9
        self.beta2_power = 0.999
        self.lr = 0.01

    def construct(self, grad):
        out = self.apply_adam_with_amsgrad(self.var, self.m, self.v, self.vhat,
                                           self.beta1_power, self.beta2_power, self.lr,
                                           self.beta1, self.beta2, self.epsilon, grad)
        return out
net = ApplyAdamWithAmsgradNet()
grad = Tensor(np.array([[0.4, 0.2], [0.2, 0.3]]).astype(np.float32))
output = net(grad)
print(net.var.asnumpy())
